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

/// Turns a kvsnap file into a stored entry: validate, compress by policy, pack, store, index.
///
/// Order is what makes a crash harmless (docs/DESIGN.md, "Crash safety"): the pack is
/// written under tmp/, fsynced and renamed into blobs/ before the index row is inserted,
/// so a row never names a missing blob; a crash leaves at most an unreferenced file.
public struct Ingestor {
    public let root: StoreRoot
    /// Layers compressed at once; bounds memory to about this many layers in flight.
    public var inFlight = 3
    /// Which layers get their attention-output fidelity measured when the input has probes.
    public var fidelityMode = IngestFidelity.Mode.sample

    public init(root: StoreRoot) { self.root = root }

    public func ingest(path: String, policy: Policy) throws -> IngestOutcome {
        let start = DispatchTime.now()
        let file = try MappedFile(path: path)
        let snapshot: Snapshot
        do { snapshot = try Snapshot(bytes: file.bytes) } catch {
            throw StoreError.invalidSnapshot(path: path, error)
        }
        let id = ContentID.of(snapshot)
        if let existing = try root.index.entry(id: id) {
            return IngestOutcome(record: existing, alreadyStored: true, milliseconds: Self.elapsed(since: start))
        }

        let temp = try root.newTempFile()
        let writer = try PackWriter(file: temp)
        var encoder = SnapshotEncoder(snapshot: snapshot, policy: policy)
        let fidelity = IngestFidelity(snapshot: snapshot, policy: policy, mode: fidelityMode)
        try SectionPipeline.run(
            layerCount: snapshot.layerCount, codec: policy.codec, inFlight: inFlight,
            stage: { i in
                let job = encoder.stage(i)
                return {
                    let packed = job.run()
                    fidelity.measure(layer: i, packed: packed)
                    // The layer is encoded; let its pages go so memory stays near a few layers.
                    let l = snapshot.layers[i]
                    for t in [l.key, l.value, l.promptQuery, l.probeQuery].compactMap({ $0 }) { file.release(t.range) }
                    return packed
                }
            },
            append: { try writer.append($0) })

        var compression = encoder.reductionRecord
        compression["policy"] = policy.name
        compression["quantization"] = policy.quantization.name
        compression["codec"] = policy.codec.name
        let (header, blobName) = try writer.finish(
            metadata: snapshot.metadata.raw.filter { $0.key != SnapshotMetadata.compressionKey && $0.key != SnapshotMetadata.seqLenKey },
            seqLen: snapshot.seqLen, kvHeads: snapshot.kvHeads, headDim: snapshot.headDim, vHeadDim: snapshot.vHeadDim,
            inputDType: snapshot.dtype, compression: compression)
        let blobPath = root.blobPath(blobName)
        try temp.commit(to: blobPath)

        let now = Date().timeIntervalSince1970
        let record = EntryRecord(
            id: id, producerKey: snapshot.metadata.key, model: snapshot.metadata.model,
            spans: snapshot.metadata.raw[SnapshotMetadata.spansKey] ?? "[]", layers: snapshot.layerCount,
            kvHeads: snapshot.kvHeads, headDim: snapshot.headDim, vHeadDim: snapshot.vHeadDim, seqLen: snapshot.seqLen,
            inputDType: snapshot.dtype.rawValue, entriesKept: header.entryCount, policy: policy.name,
            compression: Self.json(compression), fidelity: fidelity.summaryJSON(), bytesIn: file.bytes.count,
            bytesOut: temp.bytesWritten, blob: blobName, checksum: blobName, createdAt: now, lastAccessed: now)
        let sources = snapshot.metadata.spans.enumerated().compactMap { i, s in s.source.map { (source: $0, span: i) } }
        if try !root.index.insert(record, sources: sources) {
            // Another ingest of the same snapshot won the race; keep its row and blob.
            let winner = try root.index.entry(id: id)
            if winner?.blob != blobName { try? FileSystem.remove(blobPath) }
            return IngestOutcome(record: winner ?? record, alreadyStored: true, milliseconds: Self.elapsed(since: start))
        }
        return IngestOutcome(record: record, alreadyStored: false, milliseconds: Self.elapsed(since: start))
    }

    static func json(_ map: [String: String]) -> String {
        SafetensorsLayout.canonicalJSON(map)
    }

    static func elapsed(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
    }
}
