import Dispatch
import Foundation
import LightKV
import Store

/// What one ingest did.
public struct IngestOutcome: Sendable {
    public var record: EntryRecord
    /// True when the store already held this snapshot and nothing was written.
    public var alreadyStored: Bool
    public var milliseconds: Double
}

/// The steps of an ingest, in order; a failure is reported with the step it happened in
/// (the daemon writes it into `NAME.error.json`).
public enum IngestStage: String, Sendable, Codable {
    /// Opening and mapping the input file.
    case read
    /// Parsing and checking the kvsnap (structure, shapes, spans, finite values).
    case validate
    /// Compressing, packing and publishing the blob.
    case pack
    /// Inserting the index row.
    case index
}

/// Turns a kvsnap file into a stored entry: validate, compress by policy, pack, store, index.
///
/// Order is what makes a crash harmless (docs/DESIGN.md, "Crash safety"): the pack is
/// written under tmp/, fsynced and renamed into blobs/ (`BlobPacker`) before the index row
/// is inserted, so a row never names a missing blob; a crash leaves at most an
/// unreferenced file.
public struct Ingestor {
    public let root: StoreRoot
    /// Layers compressed at once; bounds memory to about this many layers in flight.
    public var inFlight = 3
    /// Which layers get their attention-output fidelity measured when the input has probes.
    public var fidelityMode = IngestFidelity.Mode.sample

    public init(root: StoreRoot) { self.root = root }

    public func ingest(path: String, policy: Policy) throws -> IngestOutcome {
        var stage = IngestStage.read
        return try ingest(path: path, policy: policy, stage: &stage)
    }

    /// Ingests `path`; `stage` holds the step reached, so a caller that catches an error
    /// knows where it happened.
    public func ingest(path: String, policy: Policy, stage: inout IngestStage) throws -> IngestOutcome {
        var reusing = true, collected = ""
        for _ in 0..<3 {
            do {
                return try ingest(path: path, policy: policy, stage: &stage, reusingGuidedSegments: reusing)
            } catch SegmentGone.collected(let segment, let wasReused) {
                // The segment it named was collected before the row went in: an `rm` or an
                // eviction of the last entry naming it, which found it no younger than its
                // tombstone (a guided segment found for this question, or this ingest's own,
                // published again a moment before). Store it again: publishing the segment anew
                // makes it younger than any tombstone, and a guided question reduces its own.
                collected = segment
                if wasReused { reusing = false }
            }
        }
        throw StoreError.io(path: root.blobs.location(collected), operation: "store (its prefix segment was "
                            + "collected by concurrent removals three times; nothing was stored)", errno: EAGAIN)
    }

    private enum SegmentGone: Error { case collected(String, reused: Bool) }

    /// Why the input's bytes read are not the file's: written while it was read, a transient
    /// failure (the daemon keeps the input and reads it again later, never an entry stored
    /// under another content's id), or a read that faulted with the file unchanged, an I/O
    /// error of the input's own.
    static func readFailure(_ file: MappedFile, _ path: String) -> StoreError {
        if file.faulted && file.identityUnchanged {
            // A read failed in the kernel with the file as it was (a bad sector, a network
            // filesystem): the input's own fault, not to be retried forever.
            return StoreError.io(path: path, operation: "read (a read of the mapped file failed; its size and times did not "
                                 + "change: a disk or network filesystem error)", errno: EIO)
        }
        return StoreError.io(path: path, operation: "ingest (the file was written while it was read: its size or times changed; "
                             + "nothing was stored, read it again once it is complete)", errno: EAGAIN)
    }

    private func ingest(path: String, policy: Policy, stage: inout IngestStage, reusingGuidedSegments: Bool) throws -> IngestOutcome {
        let start = DispatchTime.now()
        stage = .read
        let file = try MappedFile(path: path)
        stage = .validate
        let snapshot: Snapshot
        let id: String
        // A shared prefix is stored once, as a segment the entry names (docs/design/segments.md).
        let segmentEnd: Int?
        // A prompt-guided segment is named by the unreduced prefix it was reduced from; a later
        // question about the same prefix names it instead of reducing its own
        // (docs/design/segments.md, "A guided prefix"). Its rows are hashed in the id's pass.
        var rows: PrefixSource.Rows?
        do {
            // Structure first; the finite check rides along with hashing, one tensor at a time,
            // each tensor's pages dropped once read, so the mapping never holds the whole file.
            snapshot = try Snapshot(bytes: file.bytes, checkFinite: false)
            segmentEnd = segmentedPrefixEnd(snapshot, policy: policy)
            if let end = segmentEnd, policy.reduction.readsPrompt { rows = PrefixSource.Rows(snapshot, end: end) }
            id = try ContentID.of(snapshot, checkingFinite: true, visit: { [rows] in rows?.visit($0, $1) },
                                  release: { file.release($0) })
        } catch let error as KVSnapError {
            throw StoreError.invalidSnapshot(path: path, error)
        }
        // The id names the bytes just hashed only if nobody wrote them meanwhile.
        if !file.isUnchanged { throw Self.readFailure(file, path) }
        stage = .index
        // A row whose blob (or segment) is gone (an index restored from a backup older than an
        // `rm`) or damaged does not hold the entry: store it again and point the row at the new
        // blob. "Already stored" lets the daemon delete its input, so it is said only of an
        // entry whose every blob is present and holds the content its row names.
        let dangling = try root.index.entry(id: id)
        if let existing = dangling, try holds(existing) {
            try? root.index.touch(id)  // asked for again: in use
            return IngestOutcome(record: existing, alreadyStored: true, milliseconds: Self.elapsed(since: start))
        }

        stage = .pack
        var packer = BlobPacker(root: root)
        packer.inFlight = inFlight
        let fidelity = IngestFidelity(snapshot: snapshot, policy: policy, mode: fidelityMode)
        let now = Date().timeIntervalSince1970
        let bytesIn = file.bytes.count
        // Each layer's pages go once the layer is encoded, and, for a reduction that surveys
        // every layer first, once it is surveyed too (read again when it is encoded).
        let release: @Sendable (Int) -> Void = { i in
            let l = snapshot.layers[i]
            file.release(l.key.range)
            file.release(l.value.range)
        }
        let prefix = PrefixDigest.of(model: snapshot.metadata.model, ids: snapshot.tokenIDs(),
                                     metadata: snapshot.metadata, seqLen: snapshot.seqLen)
        var source: String?, reused: PackedBlob?
        if let end = segmentEnd, let rows {
            let named = PrefixSource.of(snapshot, end: end, policy: policy.name, rows: rows)
            source = named
            if reusingGuidedSegments {
                reused = try reusableSegment(source: named, prefix: prefix, model: snapshot.metadata.model, policy: policy.name, end: end)
            }
        }
        // Publishing a segment again (same bytes, same name) keeps it young while this entry is written.
        let segment = try segmentEnd.map { end in
            (blob: try reused ?? packer.packSegment(snapshot, policy: policy, end: end,
                                                    record: source.map { [EntryIndex.prefixSourceKey: $0, EntryIndex.guidedByKey: id] } ?? [:],
                                                    surveyed: release, done: { i, _ in release(i) }),
             end: end)
        }
        let segmentReader: PackReader?
        do {
            segmentReader = try segment.map { try PackReader(path: $0.blob.path) }
        } catch {
            if let segment, try root.blobs.attributes(segment.blob.name) == nil {
                throw SegmentGone.collected(segment.blob.name, reused: reused != nil)
            }
            throw error
        }
        // A reducing policy's part carries its segment's record of what the reduction did, so a
        // fetch of the whole entry says so.
        let segmentRecord = policy.reduction == .none ? [:] : segment?.blob.compression ?? [:]
        let blob = try packer.pack(snapshot, policy: policy, record: segmentRecord, part: segmentEnd.map { .suffix(start: $0) } ?? .whole,
                                   segment: segment.map { PackSegment(name: $0.blob.name, length: $0.end) }, entry: {
            PackEntry(id: id, bytesIn: bytesIn, createdAt: now, fidelity: fidelity.summaryJSON())
        }, surveyed: release, done: { i, packed in
            fidelity.measure(layer: i, packed: packed, segment: segmentReader)
            // The layer is encoded; let its pages go so memory stays near a few layers.
            let l = snapshot.layers[i]
            for t in [l.key, l.value, l.promptQuery, l.probeQuery].compactMap({ $0 }) { file.release(t.range) }
        })
        // Packed from the bytes the id names, or from a file written meanwhile (a producer
        // reusing the file it handed over): then what was packed is not that entry, and goes.
        guard file.isUnchanged else {
            try? root.retireBlob(blob.name)
            if let segment, reused == nil { try? root.retireBlob(segment.blob.name) }
            throw Self.readFailure(file, path)
        }

        stage = .index
        let record = EntryRecord(
            id: id, producerKey: snapshot.metadata.key, model: snapshot.metadata.model,
            spans: snapshot.metadata.raw[SnapshotMetadata.spansKey] ?? "[]", layers: snapshot.layerCount,
            kvHeads: snapshot.kvHeads, headDim: snapshot.headDim, vHeadDim: snapshot.vHeadDim, seqLen: snapshot.seqLen,
            inputDType: snapshot.dtype.rawValue, entriesKept: blob.header.entryCount + (segment?.blob.header.entryCount ?? 0),
            policy: policy.name,
            compression: Self.json(blob.compression), fidelity: fidelity.summaryJSON(), bytesIn: file.bytes.count,
            bytesOut: blob.bytes, blob: blob.name, checksum: blob.name, createdAt: now, lastAccessed: now,
            prefixLength: prefix?.length, prefixDigest: prefix?.digest, segment: segment?.blob.name, segmentBytes: segment?.blob.bytes)
        let sources = snapshot.metadata.spans.enumerated().compactMap { i, s in s.source.map { (source: $0, span: i) } }
        let inserted: Bool
        do {
            if let dangling, try root.index.replaceBlob(id: id, oldBlob: dangling.blob, with: record, blobs: root.blobs) {
                // Forgets the tombstone the swap left; on a shared store it waits out the grace
                // period (another host may still read it).
                if !root.defersDeletion { try root.collectBlob(dangling.blob) }
                return IngestOutcome(record: record, alreadyStored: false, milliseconds: Self.elapsed(since: start))
            }
            inserted = try root.index.insert(record, sources: sources, blobs: root.blobs)
        } catch let error as StoreError {
            // The swap and the insert both check the blobs present under the write lock.
            guard case .io(_, _, EAGAIN) = error, let segment, try root.blobs.attributes(segment.blob.name) == nil else { throw error }
            try? root.retireBlob(blob.name)  // names a segment that is gone; no row names it
            throw SegmentGone.collected(segment.blob.name, reused: reused != nil)
        }
        if !inserted {
            // Another ingest of the same snapshot won the race; keep its row and blob.
            if let winner = try root.index.entry(id: id) {
                for name in record.blobs where !winner.blobs.contains(name) { try? root.retireBlob(name) }
                return IngestOutcome(record: winner, alreadyStored: true, milliseconds: Self.elapsed(since: start))
            }
            // The winner's row went (an `rm` or an eviction) between the two: this one is the
            // entry after all. Never "already stored" without a row: the input would be deleted.
            guard try root.index.insert(record, sources: sources, blobs: root.blobs) else {
                throw StoreError.io(path: path, operation: "store (raced by other ingests of the same snapshot)", errno: EAGAIN)
            }
        }
        return IngestOutcome(record: record, alreadyStored: false, milliseconds: Self.elapsed(since: start))
    }

    /// Whether `record`'s blobs are all present and read back as a fetch opens them (content
    /// names, and the segment against the part). A missing or damaged one: false (the entry
    /// is stored again); an unreadable one (EACCES, EIO): the error, so that nothing is decided
    /// on a blob that could not be read. An object store's blobs are checked for presence
    /// only: their content was proven on upload, the service keeps it whole, and reading every
    /// one back would cost each re-submission a GET.
    private func holds(_ record: EntryRecord) throws -> Bool {
        guard try record.blobs.allSatisfy({ try root.blobs.attributes($0) != nil }) else { return false }
        if root.blobs.isShared { return true }
        do {
            _ = try Fetcher(root: root).openWhole(record)
            return true
        } catch StoreError.corrupt, StoreError.notFound, StoreError.io(_, _, ENOENT) {
            return false
        }
    }

    /// A stored guided segment reduced from `source` under `policy`, present and intact (its
    /// content name checked: a damaged one is never given to another entry), or nil.
    private func reusableSegment(source: String, prefix: (length: Int, digest: String)?, model: String,
                                 policy: String, end: Int) throws -> PackedBlob? {
        guard let prefix, prefix.length == end else { return nil }
        for found in try root.index.guidedSegments(model: model, prefixDigest: prefix.digest, policy: policy, source: source) {
            guard let attributes = try root.blobs.attributes(found.name) else { continue }
            guard let reader = try? PackReader(path: root.blobs.readablePath(found.name)),
                  reader.header.isSegment, reader.header.segment?.length == end,
                  reader.header.compression[EntryIndex.prefixSourceKey] == source,
                  try holds(reader, named: found.name) else { continue }
            return PackedBlob(name: found.name, path: reader.path, header: reader.header, bytes: attributes.bytes,
                              compression: reader.header.compression)
        }
        return nil
    }

    /// Whether `reader`'s file holds blob `name`. On a shared store that file may be this
    /// node's cached copy while the object itself was damaged since (outside kvstore): a later
    /// question would name a segment every other node refuses. So there the copy is hashed as
    /// it is published again, which repairs the object and makes it young, as a first
    /// question's publish does; one pass does both.
    private func holds(_ reader: PackReader, named name: String) throws -> Bool {
        guard root.blobs.isShared else { return (try? reader.checkContent(named: name)) != nil }
        let temp = try root.blobs.newTempFile()
        guard try Migrator.copy(MappedFile(path: reader.path), into: temp).name == name else {
            temp.abandon()
            return false
        }
        _ = try root.blobs.publish(temp, as: name)
        return true
    }

    static func json(_ map: [String: String]) -> String {
        SafetensorsLayout.canonicalJSON(map)
    }

    static func elapsed(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
    }
}
