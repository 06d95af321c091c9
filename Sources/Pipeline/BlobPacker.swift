import Foundation
import LightKV
import Store

/// A pack file published in the store's blobs, durable, and not yet named by any index row.
public struct PackedBlob: Sendable {
    /// Content name (XXH3-128 of the file), which is also its checksum.
    public var name: String
    /// A local file holding it (`BlobStore.publish`).
    public var path: String
    public var header: PackHeader
    public var bytes: Int
    /// The compression record written into the pack header.
    public var compression: [String: String]
}

/// Compresses a validated snapshot by a policy into a pack file and publishes it under
/// blobs/ — the half of an ingest that touches no index row.
///
/// Ingest and compaction share it: ingest indexes the blob as a new entry, compaction swaps
/// an existing entry over to it. The file is written under tmp/, fsynced and renamed into
/// place before `pack` returns, so whatever indexes it afterwards never names a missing or
/// half-written file; a crash before the row is written leaves an orphan that `compact`
/// collects once it is older than its grace period.
public struct BlobPacker {
    public let root: StoreRoot
    /// Layers compressed at once; bounds memory to about this many layers in flight.
    public var inFlight = 3

    public init(root: StoreRoot) { self.root = root }

    /// Layers in flight at once, bytes permitting: as many as asked while they hold at most
    /// `inFlightBudget` of input together, never fewer than one. Memory then stays within
    /// the promise of docs/DESIGN.md ("Limits") whatever the layers' size.
    public static let inFlightBudget = 256 << 20

    static func inFlight(_ asked: Int, largestLayer: Int) -> Int {
        max(1, min(asked, inFlightBudget / max(1, largestLayer)))
    }

    /// Packs `snapshot` with `policy`. `done(i, layer)` is called (on a worker thread) once
    /// layer `i` is encoded, so a caller can measure it or, streaming from a memory map,
    /// drop that layer's pages. `record` seeds the compression record (compaction keeps what
    /// an earlier policy did).
    ///
    /// `members(i)` may give layer `i`'s member positions when the snapshot cannot carry
    /// them (kvsnap has no tensor for them): compaction passes the old pack's, so a
    /// re-pack that merges nothing further keeps `fetch --expand` working. They are used
    /// only where the encoded layer tracked none and its sizes account for every one.
    ///
    /// `entry()` gives the index row's facts written into the header (for `kvstore repair`);
    /// it is called once every layer is done, so it may report what `done` measured.
    /// `surveyed(i)` is called once a reduction that looks at every layer first has seen layer
    /// `i` (see `SnapshotEncoder.surveyed`).
    ///
    /// `part` packs a segment (`.prefix`: the shared prefix, with `segment` its record) or a
    /// segmented entry's own part (`.suffix`, with `segment` naming the segment); see
    /// docs/design/segments.md.
    public func pack(_ snapshot: Snapshot, policy: Policy, record: [String: String] = [:],
                     part: EncodedPart = .whole, segment: PackSegment? = nil,
                     members: (@Sendable (Int) -> [Int32]?)? = nil,
                     entry: () -> PackEntry? = { nil },
                     surveyed: ((Int) -> Void)? = nil,
                     done: @escaping @Sendable (Int, PackedLayer) -> Void = { _, _ in }) throws -> PackedBlob {
        var encoder = SnapshotEncoder(snapshot: snapshot, policy: policy, part: part)
        do { try encoder.checkRetention() } catch { throw StoreError.badPolicy(error) }
        let temp = try root.blobs.newTempFile()
        let writer = try PackWriter(file: temp, segmented: segment?.name != nil)
        encoder.inputMembers = members
        encoder.surveyed = surveyed
        let codec = policy.codec
        let prefixEnd = snapshot.metadata.prefixEnd(seqLen: snapshot.seqLen)
        let layout = Self.headerLayout(snapshot, part: part)
        try OrderedPipeline.run(
            count: snapshot.layerCount, inFlight: Self.inFlight(inFlight, largestLayer: snapshot.largestLayerBytes),
            stage: { i in
                let job = encoder.stage(i)
                return {
                    var packed = job.run()
                    if packed.memberPositions == nil, let m = members?(i),
                       packed.sizes.reduce(0, { $0 + Int($1) }) == m.count, packed.sizes.contains(where: { $0 > 1 }) {
                        packed.memberPositions = m
                    }
                    do {
                        try packed.checkReadsBack(kvHeads: snapshot.kvHeads, headDim: snapshot.headDim, vHeadDim: snapshot.vHeadDim)
                    } catch let error as ReadBackError { throw PackError.unreadable(layer: i, error) }
                    done(i, packed)
                    return PackWriter.seal(packed, codec: codec, prefixEnd: prefixEnd)
                }
            },
            consume: { try writer.append($0) })

        var compression = record
        for (k, v) in encoder.reductionRecord { compression[k] = v }
        compression["policy"] = policy.name
        compression["quantization"] = policy.quantization.name
        compression["codec"] = policy.codec.name
        let (header, name) = try writer.finish(
            metadata: layout.metadata, seqLen: layout.seqLen, kvHeads: snapshot.kvHeads, headDim: snapshot.headDim,
            vHeadDim: snapshot.vHeadDim, inputDType: snapshot.dtype, compression: compression, entry: entry(),
            inputIDs: snapshot.tokenIDs().map { PackInputIDs(dtype: snapshot.inputIDs!.dtype.rawValue, ids: Array($0.prefix(layout.seqLen))) },
            segment: segment)
        // The header and footer must parse back (every section was decoded as it was sealed)
        // before the file is published under its name.
        _ = try PackReader(path: temp.tempPath)
        let path: String
        do { path = try root.blobs.publish(temp, as: name) } catch StoreError.io(let failed, _, ENOENT) where failed == root.blobs.location(name) {
            // The temporary file vanished before its rename: a `compact --grace-seconds 0`
            // took it in the instant between close and rename. Nothing is lost; try again.
            throw StoreError.io(path: temp.tempPath, operation: "publish (the temporary file was collected)", errno: EAGAIN)
        }
        return PackedBlob(name: name, path: path, header: header, bytes: temp.bytesWritten, compression: compression)
    }

    /// The metadata and length a pack of `part` records. A segment keeps only what every
    /// snapshot sharing its prefix agrees on (version, model, the spans inside it), so that
    /// identical prefixes pack to identical bytes whatever each request's key or prompt.
    static func headerLayout(_ snapshot: Snapshot, part: EncodedPart) -> (metadata: [String: String], seqLen: Int) {
        guard case .prefix(let end) = part else {
            return (snapshot.metadata.raw.filter { $0.key != SnapshotMetadata.compressionKey && $0.key != SnapshotMetadata.seqLenKey },
                    snapshot.seqLen)
        }
        var metadata = snapshot.metadata.raw.filter { [SnapshotMetadata.versionKey, SnapshotMetadata.modelKey].contains($0.key) }
        metadata[SnapshotMetadata.spansKey] = SnapshotMetadata.encode(snapshot.metadata.spans.filter { $0.end <= end })
        return (metadata, end)
    }
}

/// Whether a snapshot is stored as a segment and its own part (docs/design/segments.md,
/// "When an entry is segmented"): the prefix end when it is, nil when it is stored whole.
public func segmentedPrefixEnd(_ snapshot: Snapshot, policy: Policy) -> Int? {
    guard snapshot.inputIDs != nil else { return nil }
    guard snapshot.metadata.raw[SnapshotMetadata.seqLenKey] == nil,
          snapshot.layers.allSatisfy({ $0.positions == nil && $0.sizes == nil }) else { return nil }
    let end = snapshot.metadata.prefixEnd(seqLen: snapshot.seqLen)
    guard end > 0 && end < snapshot.seqLen else { return nil }
    // A reduction sees the vision entries of the whole snapshot at once (budgets over all
    // frames): it is split at the seam only when every one of them lies in the prefix.
    if policy.reduction != .none, snapshot.metadata.spans.contains(where: { $0.isVision && $0.end > end }) { return nil }
    return end
}

extension BlobPacker {
    /// Packs and publishes `snapshot`'s shared prefix as a segment (`segmentedPrefixEnd`).
    /// `record` seeds its compression record (a guided segment's `prefix_source`); `surveyed`
    /// and `done` as for `pack`.
    public func packSegment(_ snapshot: Snapshot, policy: Policy, end: Int, record: [String: String] = [:],
                            surveyed: ((Int) -> Void)? = nil,
                            done: @escaping @Sendable (Int, PackedLayer) -> Void = { _, _ in }) throws -> PackedBlob {
        let ids = snapshot.tokenIDs() ?? []
        let digest = PrefixDigest.of(model: snapshot.metadata.model, ids: ids[0..<end])
        return try pack(snapshot, policy: policy, record: record, part: .prefix(end: end),
                        segment: PackSegment(prefixDigest: digest, length: end), surveyed: surveyed, done: done)
    }
}
