import Foundation
import LightKV
import Store

/// Re-packs one stored entry with another policy, keeping its id, and swaps the blob
/// (`kvstore repack`, and compaction's cold re-pack).
///
///     let outcome = try EntryRepacker(root: root).repack(record, policy: try Policy(parsing: "none+zstd19"))
///
/// The pack is read back as a kvsnap under tmp/ (the layout `fetch` writes: keys and values
/// in the input dtype, with positions and sizes), which is an already-compressed input
/// (KVSNAP.md) that `Snapshot` accepts; `BlobPacker` packs it with the new policy and
/// publishes the new blob; the row is pointed at it only if it still names the old blob;
/// then the old blob is collected. A fetch that opened the old blob keeps its mapping; one
/// that read the row just before the swap gets ENOENT and `Fetcher.open` reads the row
/// again.
///
/// Member positions (what `fetch --expand` needs) survive a re-pack: the old pack's are
/// handed to the encoder, and a cold policy that merges further extends them.
public struct EntryRepacker {
    public let root: StoreRoot

    public init(root: StoreRoot) { self.root = root }

    public enum Outcome: Equatable, Sendable {
        /// The entry now points at a new blob; bytes before and after.
        case swapped(oldBytes: Int, newBytes: Int)
        /// The entry changed (removed, re-packed, fetched and re-packed by someone else)
        /// while this ran; the new blob was collected and nothing changed.
        case raced
        /// The new pack is byte-identical to the old one.
        case unchanged
    }

    /// With `idle` (compaction's cold re-pack), the swap happens only while the entry is still
    /// unpinned and unfetched since it was listed; otherwise the new blob goes (`raced`).
    public func repack(_ record: EntryRecord, policy: Policy, idle: IdleCondition? = nil) throws -> Outcome {
        let fetcher = Fetcher(root: root)
        // Re-packing another entry's blob (or a damaged one) under this id would make the
        // damage permanent: the content must be the row's.
        let (current, pack, segment) = try fetcher.openWhole(record)
        let dtype = DType(rawValue: pack.header.inputDType).flatMap { $0.isFloat ? $0 : nil } ?? .f16
        let temp = "\(root.blobs.tempDirectory)/\(UUID().uuidString.lowercased()).repack.safetensors"
        defer { try? FileSystem.remove(temp) }
        let sink = try OutputSink(path: temp)
        do {
            let options = FetchOptions(dtype: dtype)
            try fetcher.writeSnapshot(pack, segment: segment, layout: Fetcher.layout(pack, segment: segment, options: options, id: current.id),
                                      options: options, to: sink)
            try sink.finish()
        } catch {
            sink.abandon()
            throw error
        }
        let file = try MappedFile(path: temp)
        let snapshot: Snapshot
        do { snapshot = try Snapshot(bytes: file.bytes) } catch { throw StoreError.invalidSnapshot(path: temp, error) }
        var seed = pack.header.compression
        seed["repacked_from"] = current.policy
        // Stored whole now: no guided segment of its own, and none a later question may name.
        seed[EntryIndex.prefixSourceKey] = nil
        seed[EntryIndex.guidedByKey] = nil
        // The old pack's member positions describe the entries as they are; a further
        // reduction merges them on, and keeps tracking their members.
        let members: @Sendable (Int) -> [Int32]? = { i in (try? pack.section(i))?.memberPositions }
        let blob = try BlobPacker(root: root).pack(snapshot, policy: policy, record: seed, members: members, entry: {
            PackEntry(id: current.id, bytesIn: current.bytesIn, createdAt: current.createdAt, fidelity: current.fidelity)
        })
        guard blob.name != current.blob else { return .unchanged }

        var updated = current
        updated.blob = blob.name
        updated.checksum = blob.name
        updated.bytesOut = blob.bytes
        updated.policy = policy.name
        updated.compression = SafetensorsLayout.canonicalJSON(blob.compression)
        updated.entriesKept = blob.header.entryCount
        // Read back with positions, the entry is an already-compressed input: stored whole.
        updated.segment = nil
        updated.segmentBytes = nil
        if try root.index.replaceBlob(id: current.id, oldBlob: current.blob, with: updated, blobs: root.blobs, idle: idle) {
            if !root.defersDeletion { for name in current.blobs { try root.collectBlob(name) } }
            return .swapped(oldBytes: current.bytesOut, newBytes: blob.bytes)
        }
        try root.retireBlob(blob.name)
        return .raced
    }
}
