import Dispatch
import Foundation
import LightKV
import Store

/// What `kvstore compact` should do.
public struct CompactionSettings: Sendable {
    /// Evict least-recently-fetched unpinned entries until stored bytes are at most this.
    public var budget: Int?
    /// Re-pack unpinned entries not fetched for this many days ...
    public var coldDays: Double?
    /// ... with this policy.
    public var coldPolicy: Policy?
    /// Blobs with no row are settled (adopted or, damaged, deleted), and temporary files
    /// deleted, once older than this (seconds): an ingest publishes its blob a moment before
    /// inserting its row, and writes its temporary file for as long as packing takes.
    public var grace: Double = 3600
    /// Entries whose blobs are read back fully and checked at the end.
    public var verifySample = 8
    /// Report what would be done and change nothing.
    public var dryRun = false

    public init() {}
}

/// Keeps a store within its budget and tidy; safe while `watch` ingests and fetches run.
///
/// Steps, in order (docs/DESIGN.md, "Compaction, step by step"): delete stale temporary
/// files and the blobs of removed entries (tombstoned); settle orphan blobs by the orphan rule
/// (`OrphanAdopter`: adopt the valid, delete the damaged and superseded); abort stale uploads
/// (S3); re-pack cold entries (`EntryRepacker`); evict least-recently-fetched unpinned entries
/// until under budget (row and tombstone, then blob); checkpoint and optimise SQLite; verify a
/// random sample. Every deletion of a blob goes through `StoreRoot.collectBlob`, which never
/// removes a blob a row names.
public struct Compactor {
    public let root: StoreRoot

    public init(root: StoreRoot) { self.root = root }

    /// Runs compaction; `progress` receives a line now and then during long steps.
    public func run(_ settings: CompactionSettings, progress: (String) -> Void = { _ in }) throws -> CompactionReport {
        let start = DispatchTime.now()
        let now = Date().timeIntervalSince1970
        if !settings.dryRun { try root.index.requireKnownSchema(for: "compact", index: root.path) }
        // One compactor per store, on any host; a dry run changes nothing and needs no lock.
        if !settings.dryRun, try !root.index.tryCompactionLock() {
            throw StoreError.io(path: root.path, operation: "compact (another compaction holds this store's compaction lock)", errno: EAGAIN)
        }
        var report = CompactionReport()
        report.dryRun = settings.dryRun
        report.entriesBefore = try root.index.count()
        report.bytesBefore = try root.index.storedBytes()

        for file in root.staleTemporaryFiles(minimumAge: settings.grace, now: now) {
            if !settings.dryRun { try FileSystem.remove(file.path) }
            report.temporaryFilesRemoved += 1
            report.temporaryBytes += file.bytes
        }
        // A blob published again after its tombstone is an entry ingested anew: an orphan to
        // adopt. The other tombstoned blobs are collected after the orphans (below).
        if !settings.dryRun { try root.forgetRepublishedTombstones() }
        // The orphan rule (docs/DESIGN.md): adopt every orphan that reads back whole; delete
        // only damaged files and superseded copies.
        let adopter = OrphanAdopter(root: root, deletes: true, dryRun: settings.dryRun)
        (report.strays, report.reshelved) = try adopter.reshelveStrays()
        // A part younger than the grace period is an ingest about to write its row, or one
        // that died after publishing its part: settled once old enough, with its segment, so
        // that segment waits too, tombstoned or not (docs/design/segments.md, "Ingest, step by
        // step, and what a crash leaves").
        let orphans = try root.orphanBlobs(minimumAge: 0)
        let awaited = try adopter.segmentsNamed(byParts: orphans.filter { $0.age < settings.grace }.map(\.name))
        var segments: [String] = [], keptSegments = awaited
        for orphan in orphans where orphan.age >= settings.grace {
            switch try adopter.settle(orphan.name, minimumAge: settings.grace) {
            case .adopted(let id): report.orphansAdopted.append(id)
            case .relinked(let id): report.orphansAdopted.append(id)
            case .superseded(_, let deleted):
                if deleted || settings.dryRun { report.orphansRemoved += 1; report.orphanBytes += orphan.bytes }
            case .damaged(let problem, let deleted):
                if deleted || settings.dryRun { report.orphansRemoved += 1; report.orphanBytes += orphan.bytes }
                report.damagedOrphans.append(.init(id: orphan.name, problem: problem))
            case .unrecognised(let problem, let segment):
                report.orphansKept.append(.init(id: orphan.name, problem: problem))
                if let segment { keptSegments.insert(segment) }
            case .tombstoned, .settledElsewhere: break
            case .segment: segments.append(orphan.name)
            }
        }
        // After every entry's part was settled: an unnamed segment holds no entry by itself.
        for segment in try adopter.settleSegments(segments, minimumAge: settings.grace, sparing: keptSegments) {
            report.orphansRemoved += 1; report.orphanBytes += segment.bytes
        }
        // Tombstoned blobs after the orphans: a tombstoned segment that an orphan part names
        // (an index restored from a backup older than the part's row) was just named again by
        // the part's adoption, and is kept; collected first, it left the part unrecognised.
        let doomed = try root.collectDoomed(grace: settings.grace, dryRun: settings.dryRun, sparing: awaited)
        report.doomedRemoved = doomed.count
        report.doomedBytes = doomed.bytes
        // Every orphan older than the grace period was settled just now; a removal a month
        // older than that has nothing left to keep from adoption.
        if !settings.dryRun { try root.index.forgetRemovedEntries(olderThan: settings.grace + 30 * 86_400) }
        report.uploadsAborted = try root.blobs.abortStaleUploads(minimumAge: settings.grace, dryRun: settings.dryRun)

        if let days = settings.coldDays, let policy = settings.coldPolicy {
            let cold = try root.index.cold(before: now - days * 86_400, notPolicy: policy.name)
            let repacker = EntryRepacker(root: root)
            for (i, record) in cold.enumerated() {
                if settings.dryRun { report.repacked.append(record.id); continue }
                progress("re-packing \(i + 1)/\(cold.count) \(record.id.prefix(12)) with \(policy.name)")
                do {
                    if case .swapped(let old, let new) = try repacker.repack(record, policy: policy,
                                                                             idle: IdleCondition(lastAccessed: record.lastAccessed)) {
                        report.repacked.append(record.id)
                        report.repackBytesSaved += old - new
                    }
                } catch StoreError.notFound {
                    continue  // removed while we worked: nothing to re-pack
                }
            }
        }

        if let budget = settings.budget {
            var stored = try root.index.storedBytes()
            for record in try root.index.leastRecentlyUsed() where stored > budget {
                if settings.dryRun {
                    report.evicted.append(record.id)
                    report.evictedBytes += record.bytesOut
                    stored -= record.bytesOut
                    continue
                }
                // Row first, then blob (or its doom): a crash in between leaves an orphan,
                // never a row without its blob. A fetch that already opened the blob keeps
                // its mapping.
                // Only while it is still unpinned and unfetched: a `pin` or a fetch during this
                // run keeps it.
                guard let removed = try root.removeEntry(record.id, idle: IdleCondition(lastAccessed: record.lastAccessed)) else { continue }
                // A segment goes with the last entry that names it.
                stored = removed.segment == nil ? stored - removed.bytesOut : try root.index.storedBytes()
                report.evicted.append(removed.id)
                report.evictedBytes += removed.bytesOut
            }
            report.overBudgetPinned = stored > budget
        }

        if !settings.dryRun {
            let checkpoint = try root.index.checkpoint()
            report.checkpointBusy = checkpoint.busy
            report.checkpointFrames = checkpoint.checkpointed
            try root.index.optimize()
        }

        let all = try root.index.all()
        var generator = SystemRandomNumberGenerator()
        let sample = Array(all.shuffled(using: &generator).prefix(settings.verifySample))
        let verifier = Verifier(root: root)
        for (i, record) in sample.enumerated() {
            progress("verifying \(i + 1)/\(sample.count)")
            report.verified += 1
            // A concurrent remove or re-pack changes the row under us: `recheck` follows it.
            if case .damaged(let problem) = try verifier.recheck(record) {
                report.verifyFailures.append(.init(id: record.id, problem: problem))
            }
        }
        report.entriesAfter = settings.dryRun ? report.entriesBefore - report.evicted.count : all.count
        report.bytesAfter = settings.dryRun ? report.bytesBefore - report.evictedBytes : try root.index.storedBytes()
        report.milliseconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
        return report
    }
}
