import Foundation
import LightKV
import Store

/// What `repair` found and did.
public struct RepairReport: Sendable, Codable {
    public struct Problem: Sendable, Codable {
        public var blob: String
        public var problem: String
    }
    /// Blob files looked at.
    public var blobs = 0
    /// Blobs some row already names.
    public var alreadyIndexed = 0
    /// Entries whose row was rebuilt from their blob (ids).
    public var recovered: [String] = []
    /// Rows whose missing blob was found again under another name (ids).
    public var relinked: [String] = []
    /// Blobs of entries another intact blob already serves (left for compaction).
    public var superseded: [String] = []
    /// Blobs that could not be indexed, and why.
    public var unrecoverable: [Problem] = []
    /// Entries whose blob is missing and was not found (ids): `kvstore rm` them.
    public var missingBlobs: [String] = []
    /// Segments (shared prefixes) no entry names: compaction deletes them after its grace period.
    public var unreferencedSegments: [String] = []
    /// Blobs left unindexed because they were removed on purpose (a tombstone at least as new
    /// as the file), for compaction to delete.
    public var removed: [String] = []
    /// Things under the blobs that are not blobs in their place (skipped, never opened).
    public var strays: [BlobStray] = []
    /// Packs found in the wrong fan-out folder and moved to their own (paths they had).
    public var reshelved: [String] = []
    /// Where a damaged index file was moved before a new one was built.
    public var damagedIndexMovedTo: String?
    public var dryRun = false
}

/// Rebuilds index rows from the blobs' own pack headers, as LevelDB's RepairDB rebuilds a
/// database from its table files.
///
/// Every pack names its entry (`PackHeader.entry`: id, input size, creation time,
/// fidelity) beside the metadata, shapes and compression record, which is all a row holds
/// but access statistics. A blob is indexed only after its content matches its name and
/// every layer decodes, so repair never makes a damaged blob servable. Rows are inserted the
/// way ingest inserts them (the blob is checked present under the write lock), so repair
/// is safe beside running ingests and compactions.
public struct Repairer {
    public let root: StoreRoot

    public init(root: StoreRoot) { self.root = root }

    /// Opens a store for repair. An SQLite index (`sqliteIndex`, the file) that SQLite
    /// cannot open or finds damaged (`PRAGMA quick_check`) is moved aside, with its -wal and
    /// -shm, to `index.sqlite.damaged-<time>` and a new one is created, for `repair` to fill.
    /// A PostgreSQL index (`sqliteIndex` nil) is opened as it is.
    ///
    /// The store's `IndexLock` is taken exclusively first and held by the returned `lock`
    /// until repair is done: no other process has the index open meanwhile.
    public static func open(sqliteIndex index: String?, _ open: () throws -> StoreRoot) throws -> (root: StoreRoot, movedAside: String?, lock: IndexLock?) {
        guard let index else { return (try open(), nil, nil) }
        let lock = try IndexLock(indexPath: index, mode: .exclusive)
        let problem: String
        do {
            let root = try open()
            let check = try root.index.quickCheck()
            if check == "ok" { return (root, nil, lock) }
            problem = check
        } catch let e as StoreError where !e.isTransient {
            guard case .database(let message) = e else { throw e }
            problem = message
        }
        let aside = "\(index).damaged-\(Int(Date().timeIntervalSince1970))"
        for suffix in ["", "-wal", "-shm"] where FileSystem.exists(index + suffix) {
            guard rename(index + suffix, aside + suffix) == 0 else {
                throw StoreError.io(path: index + suffix, operation: "move the damaged index (\(problem)) aside", errno: errno)
            }
        }
        return (try open(), aside, lock)
    }

    public func repair(dryRun: Bool = false) throws -> RepairReport {
        if !dryRun { try root.index.requireKnownSchema(for: "repair", index: root.path) }
        var report = RepairReport()
        report.dryRun = dryRun
        let adopter = OrphanAdopter(root: root, deletes: false, dryRun: dryRun)
        (report.strays, report.reshelved) = try adopter.reshelveStrays()
        let referenced = try root.index.referencedBlobs()
        var segments: [String] = []
        for name in try root.blobs.names().sorted() {
            report.blobs += 1
            if referenced.contains(name) { report.alreadyIndexed += 1; continue }
            let path = root.blobs.location(name)
            switch try adopter.settle(name) {
            case .adopted(let id): report.recovered.append(id)
            case .relinked(let id): report.relinked.append(id)
            case .superseded: report.superseded.append(path)
            case .damaged(let problem, _): report.unrecoverable.append(.init(blob: path, problem: problem))
            case .unrecognised(let problem, _): report.unrecoverable.append(.init(blob: path, problem: problem))
            case .tombstoned: report.removed.append(path)
            case .settledElsewhere: report.alreadyIndexed += 1
            case .segment: segments.append(name)
            }
        }
        // Segments are settled last: adopting an entry's part above may have named one again.
        for name in segments {
            if try root.index.isReferenced(blob: name) { report.alreadyIndexed += 1 } else { report.unreferencedSegments.append(root.blobs.location(name)) }
        }
        for record in try root.index.all() where try record.blobs.contains(where: { try root.blobs.attributes($0) == nil }) {
            if !report.relinked.contains(record.id) { report.missingBlobs.append(record.id) }
        }
        // The rebuilt index began with its oldest entry.
        if !dryRun { try root.index.resetCreatedAtToOldestEntry() }
        return report
    }

    /// Why a pack's header gives no index row.
    enum RecordError: Error, CustomStringConvertible {
        case predatesEntryRecords(path: String)
        /// A segment: a shared prefix that entries name, not an entry of its own.
        case segment(path: String)

        var description: String {
            switch self {
            case .predatesEntryRecords(let path): "\(path): the pack predates entry records in pack headers; its entry id cannot be recovered"
            case .segment(let path): "\(path): a segment (a shared prefix) that no entry names"
            }
        }
    }

    /// The index row a pack file describes, read from its header alone.
    static func record(fromBlob pack: PackReader, name: String) throws -> EntryRecord {
        let path = pack.path
        let h = pack.header
        if h.isSegment { throw RecordError.segment(path: path) }
        guard let entry = h.entry else { throw RecordError.predatesEntryRecords(path: path) }
        guard entry.id.count == 64, entry.id.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
            throw StoreError.corrupt(path: path, problem: "header entry id \"\(entry.id.prefix(80))\" is not 64 lowercase hex digits")
        }
        let metadata: SnapshotMetadata
        do { metadata = try SnapshotMetadata(parsing: h.metadata) } catch {
            throw StoreError.corrupt(path: path, problem: "header metadata: \(error)")
        }
        let mtime = FileSystem.modified(path) ?? entry.createdAt
        let prefix = PrefixDigest.of(model: metadata.model, ids: h.inputIDs?.ids, metadata: metadata, seqLen: h.seqLen)
        return EntryRecord(
            id: entry.id, producerKey: metadata.key, model: metadata.model,
            spans: h.metadata[SnapshotMetadata.spansKey] ?? "[]", layers: h.layers.count,
            kvHeads: h.kvHeads, headDim: h.headDim, vHeadDim: h.vHeadDim, seqLen: h.seqLen,
            inputDType: h.inputDType, entriesKept: h.entryCount, policy: h.compression["policy"] ?? "unknown",
            compression: SafetensorsLayout.canonicalJSON(h.compression), fidelity: entry.fidelity, bytesIn: entry.bytesIn,
            bytesOut: pack.size, blob: name, checksum: name, createdAt: entry.createdAt,
            lastAccessed: max(entry.createdAt, mtime), prefixLength: prefix?.length, prefixDigest: prefix?.digest,
            segment: h.segment?.name)
    }

    /// The image sources of a rebuilt row, as ingest records them.
    static func sources(_ record: EntryRecord) throws -> [(source: String, span: Int)] {
        let spans = try JSONDecoder().decode([Span].self, from: Data(record.spans.utf8))
        return spans.enumerated().compactMap { i, s in s.source.map { (source: $0, span: i) } }
    }
}
