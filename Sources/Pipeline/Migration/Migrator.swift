import Foundation
import Store

/// Copies every entry of one store into another (docs/DESIGN.md, "Migrating a store"):
/// each source row in id order, its blob verified whole (content against its name, every
/// layer decoded), copied into the destination's temporary file while hashed again,
/// published there, and only then its row inserted with the same record and sources, as an
/// ingest does. An id the destination already holds is skipped, so a migration stopped at
/// any point resumes where it stopped when run again.
public struct Migrator {
    public let source: StoreRoot
    /// Nil only in a dry run towards a store that does not exist yet: it holds nothing.
    public let destination: StoreRoot?

    /// Source rows read at a time.
    public static let pageSize = 256

    public init(source: StoreRoot, destination: StoreRoot?) {
        self.source = source; self.destination = destination
    }

    /// Migrates every entry, telling `progress` each one's outcome with its position and the
    /// number of source entries when the run began. Damaged source blobs are reported and
    /// skipped; any other failure stops the run (`MigrationStopped`).
    public func run(dryRun: Bool = false,
                    progress: (_ record: EntryRecord, _ step: MigrationStep, _ position: Int, _ total: Int) -> Void = { _, _, _, _ in }) throws -> MigrationReport {
        precondition(dryRun || destination != nil, "a migration that writes needs its destination open")
        let start = DispatchTime.now()
        var report = MigrationReport()
        report.dryRun = dryRun
        do {
            let total = try source.index.count()
            var after = ""
            while true {
                let page = try source.index.page(after: after, limit: Self.pageSize)
                guard let last = page.last else { break }
                for record in page {
                    let step = try migrate(record, dryRun: dryRun)
                    report.add(step, id: record.id)
                    progress(record, step, report.entries, max(total, report.entries))
                }
                after = last.id
            }
        } catch {
            report.milliseconds = Ingestor.elapsed(since: start)
            throw MigrationStopped(report: report, cause: error)
        }
        report.milliseconds = Ingestor.elapsed(since: start)
        return report
    }

    /// Migrates one entry. A failed check is repeated on the row read afresh, as `verify`
    /// does: the source may be live, and an `rm` or a compaction's swap may have taken the
    /// blob the row named a moment ago.
    func migrate(_ record: EntryRecord, dryRun: Bool) throws -> MigrationStep {
        var record = record
        for _ in 0..<3 {
            let step = try attempt(record, dryRun: dryRun)
            guard case .damaged = step else { return step }
            guard let fresh = try source.index.entry(id: record.id) else { return .removed }
            if fresh.blob == record.blob { return step }
            record = fresh
        }
        return try attempt(record, dryRun: dryRun)
    }

    private func attempt(_ record: EntryRecord, dryRun: Bool) throws -> MigrationStep {
        if let there = try destination?.index.entry(id: record.id) {
            return there.blob == record.blob ? .alreadyThere : .keptDifferent(destinationBlob: there.blob)
        }
        guard !dryRun, let destination else { return .wouldCopy(bytes: record.bytesOut) }

        let location = source.blobs.location(record.blob)
        let blob: MappedFile
        do {
            guard try source.blobs.attributes(record.blob) != nil else { return .damaged("blob \(location) is missing") }
            // From S3: a download hashed against the name, refused as corrupt if it differs.
            let path = try source.blobs.readablePath(record.blob)
            if let problem = try Verifier.damage(inPackAt: path, of: record, location: location) { return .damaged(problem) }
            if let problem = try Verifier(root: source).segmentDamage(of: record) { return .damaged(problem) }
            // Kept open from here: a blob collected meanwhile stays readable to this copy.
            blob = try MappedFile(path: path)
        } catch let error as StoreError where !error.isTransient {
            return .damaged("\(error)")
        }

        // A segmented entry's segment first (docs/design/segments.md), once per destination.
        if let segment = record.segment {
            if let problem = try copy(segment, to: destination) { return .damaged(problem) }
        }
        let temp = try destination.blobs.newTempFile()
        let copied = try Self.copy(blob, into: temp)
        guard copied.name == record.blob else {
            temp.abandon()
            return .damaged("blob \(location) changed while it was copied: its content is now \(copied.name)")
        }
        // Durable in the destination before any row names it.
        _ = try destination.blobs.publish(temp, as: record.blob)
        let sources = try source.index.spanSources(of: record.id)
        if try destination.index.insert(record, sources: sources, blobs: destination.blobs) {
            return .copied(bytes: copied.bytes)
        }
        // Another process stored this id meanwhile: keep its row, as a losing ingest does.
        let winner = try destination.index.entry(id: record.id)
        if winner?.blob == record.blob { return .alreadyThere }
        for name in record.blobs where !(winner?.blobs.contains(name) ?? false) { try? destination.retireBlob(name) }
        return .keptDifferent(destinationBlob: winner?.blob ?? "none: removed there meanwhile")
    }

    /// Copies blob `name` (checked already) into `destination`, published again when it is
    /// there already (a segment a row is about to name must be young, as an ingest keeps it);
    /// the problem when its content changed on the way.
    private func copy(_ name: String, to destination: StoreRoot) throws -> String? {
        let file = try MappedFile(path: source.blobs.readablePath(name))
        let temp = try destination.blobs.newTempFile()
        let copied = try Self.copy(file, into: temp)
        guard copied.name == name else {
            temp.abandon()
            return "segment \(source.blobs.location(name)) changed while it was copied: its content is now \(copied.name)"
        }
        _ = try destination.blobs.publish(temp, as: name)
        return nil
    }

    /// Copies `file` into `temp`, hashing what is written: the content name of the copy, and
    /// its bytes. Pages are dropped as they are copied, so memory stays flat.
    static func copy(_ file: MappedFile, into temp: AtomicFile) throws -> (name: String, bytes: Int) {
        let digest = ContentDigest()
        let chunk = 8 << 20
        var offset = 0
        while offset < file.bytes.count {
            let end = min(offset + chunk, file.bytes.count)
            let bytes = UnsafeRawBufferPointer(rebasing: file.bytes[offset..<end])
            digest.update(bytes)
            try temp.write(bytes)
            file.release(offset..<end)
            offset = end
        }
        return (digest.hex, file.bytes.count)
    }
}
