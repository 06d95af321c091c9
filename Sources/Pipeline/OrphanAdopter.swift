import Foundation
import LightKV
import Store

/// What became of one orphan blob (a blob no row names).
public enum OrphanFate: Sendable, Equatable {
    /// Indexed from its own record: the entry `id` is served again.
    case adopted(id: String)
    /// Its entry's row named a missing or damaged blob and now names this one.
    case relinked(id: String)
    /// Another intact blob already serves its entry; `deleted` when it was collected.
    case superseded(id: String, deleted: Bool)
    /// It does not read back (content against name, every layer); `deleted` when collected.
    case damaged(problem: String, deleted: Bool)
    /// A pack that predates entry records (nothing says which entry it is), or an entry's
    /// part whose segment is missing or damaged: kept, and so is that `segment`, if present.
    case unrecognised(problem: String, segment: String? = nil)
    /// A segment (a shared prefix, docs/design/segments.md) no row names: it holds no entry by
    /// itself. Settled after every other orphan (`settleSegments`), since adopting an entry
    /// part may make it named again.
    case segment
    /// It carries a tombstone at least as new as the file: removed on purpose, left for the
    /// tombstone's collection.
    case tombstoned
    /// Gone, named by a row, or published too recently, by the time it was looked at.
    case settledElsewhere
}

/// Decides every orphan's fate by the orphan rule (docs/DESIGN.md, "The orphan rule"): a
/// valid blob is never deleted because a row is missing. Orphans that read back whole are
/// adopted (their row rebuilt from the pack's own record, as `repair` does); only damaged
/// files and superseded copies may be deleted, and only through `StoreRoot.collectBlob`
/// (which never deletes a blob a row names). `repair` adopts and deletes nothing;
/// compaction adopts and deletes.
public struct OrphanAdopter {
    public let root: StoreRoot
    /// Whether damaged files and superseded copies are deleted (compaction) or only reported.
    public var deletes: Bool
    /// Report what would happen; change nothing.
    public var dryRun: Bool

    public init(root: StoreRoot, deletes: Bool, dryRun: Bool = false) {
        self.root = root; self.deletes = deletes; self.dryRun = dryRun
    }

    /// Settles orphan `name` if it is older than `minimumAge` seconds by the blob store's clock
    /// (an ingest publishes its blob a moment before its row). A transient
    /// failure (a full disk, an unreachable object store) is thrown: nothing is decided
    /// about a blob that could not be read.
    public func settle(_ name: String, minimumAge: Double = 0) throws -> OrphanFate {
        guard let attributes = try root.blobs.attributes(name), attributes.age >= minimumAge,
              try !root.index.isReferenced(blob: name) else { return .settledElsewhere }
        if let tombstoneAge = try root.index.tombstoneAge(of: name), tombstoneAge <= attributes.oldest { return .tombstoned }
        let location = root.blobs.location(name)
        let pack: PackReader
        do {
            pack = try root.blobs.openPack(name)
        } catch let error as StoreError where error.isTransient || error.isIO {
            // Gone since it was listed (collected elsewhere), or not read, so not judged.
            if case .io(_, _, ENOENT) = error, try root.blobs.attributes(name) == nil { return .settledElsewhere }
            throw error
        } catch {
            return try damaged(name, "\(error)", minimumAge: minimumAge)
        }
        var record: EntryRecord
        do {
            record = try Repairer.record(fromBlob: pack, name: name)
        } catch Repairer.RecordError.predatesEntryRecords(let path) {
            return .unrecognised(problem: "\(path): the pack predates entry records in pack headers; its entry id cannot be recovered")
        } catch Repairer.RecordError.segment {
            return .segment
        } catch {
            return try damaged(name, "\(error)", minimumAge: minimumAge)
        }
        if let problem = try Verifier.damage(inPack: pack, of: record, location: location) {
            return try damaged(name, problem, minimumAge: minimumAge)
        }
        // An entry's part is adopted with its segment, or not at all (and then kept: the part
        // itself is sound, and the segment may come back with a restored backup).
        if record.segment != nil {
            if let problem = try Verifier(root: root).segmentDamage(of: record) {
                return .unrecognised(problem: "\(location): \(problem); the entry's own part is kept", segment: record.segment)
            }
            let (bytes, count) = try Self.segmentFacts(record, root: root)
            record.segmentBytes = bytes
            record.entriesKept += count
        }
        if let existing = try root.index.entry(id: record.id) {
            let intact = try Verifier(root: root).damage(of: existing) == nil
            if intact {
                let deleted = try deletes && !dryRun && root.collectBlob(name, minimumAge: minimumAge) != nil
                return .superseded(id: record.id, deleted: deleted)
            }
            if !dryRun {
                guard try root.index.replaceBlob(id: record.id, oldBlob: existing.blob, with: record, blobs: root.blobs) else {
                    return .settledElsewhere
                }
                // The swap tombstoned the old blobs; `repair` (which deletes nothing) leaves them
                // to compaction.
                if deletes && !root.defersDeletion { for old in existing.blobs where !record.blobs.contains(old) { try root.collectBlob(old) } }
            }
            return .relinked(id: record.id)
        }
        if !dryRun {
            let sources = try Repairer.sources(record)
            guard try root.index.insert(record, sources: sources, blobs: root.blobs, adopting: true) else {
                return try root.index.entry(id: record.id) == nil ? .tombstoned : .settledElsewhere
            }
        }
        return .adopted(id: record.id)
    }

    /// Settles segments no row named when `settle` saw them: those still unnamed now and older
    /// than `minimumAge` are deleted when this adopter deletes (through `collectBlob`, which
    /// keeps any a row names by then), except those a kept part names (`sparing`: the part
    /// may be adopted once its segment reads back). Returns those deleted (or, in a dry run,
    /// that would be).
    public func settleSegments(_ names: [String], minimumAge: Double, sparing: Set<String> = []) throws -> [(name: String, bytes: Int)] {
        var removed: [(name: String, bytes: Int)] = []
        for name in names where !sparing.contains(name) {
            guard try !root.index.isReferenced(blob: name) else { continue }
            guard let attributes = try root.blobs.attributes(name), attributes.age >= minimumAge else { continue }
            if dryRun { removed.append((name, attributes.bytes)); continue }
            guard deletes, let freed = try root.collectBlob(name, minimumAge: minimumAge) else { continue }
            removed.append((name, freed))
        }
        return removed
    }

    /// The segments that the entry parts among `names` (orphans too young to settle) name.
    /// A blob gone since it was listed, or damaged, names nothing; a failure to read one is
    /// thrown, since what it would have named is not known.
    public func segmentsNamed(byParts names: [String]) throws -> Set<String> {
        var named: Set<String> = []
        for name in names {
            do {
                if let segment = try root.blobs.openPack(name).header.segment?.name { named.insert(segment) }
            } catch let error as StoreError where error.isTransient || error.isIO {
                if case .io(_, _, ENOENT) = error, try root.blobs.attributes(name) == nil { continue }
                throw error
            } catch {
                continue
            }
        }
        return named
    }

    /// A segmented entry's segment size and entry count, from the segment itself.
    static func segmentFacts(_ record: EntryRecord, root: StoreRoot) throws -> (bytes: Int, count: Int) {
        guard let name = record.segment else { return (0, 0) }
        let segment = try root.blobs.openPack(name)
        return (segment.size, segment.header.entryCount)
    }

    /// What lies under the blobs without being a blob in its place: packs in a wrong fan-out
    /// folder are moved home (unless `dryRun`) and so become blobs like any other; the rest is
    /// returned to be reported, never opened.
    public func reshelveStrays() throws -> (left: [BlobStray], moved: [String]) {
        var left: [BlobStray] = [], moved: [String] = []
        for stray in try root.blobs.strays() {
            if !dryRun, try root.blobs.reshelve(stray) { moved.append(stray.path) } else { left.append(stray) }
        }
        return (left, moved)
    }

    /// A damaged orphan: collected when this adopter deletes.
    private func damaged(_ name: String, _ problem: String, minimumAge: Double) throws -> OrphanFate {
        let deleted = try deletes && !dryRun && root.collectBlob(name, minimumAge: minimumAge) != nil
        return .damaged(problem: problem, deleted: deleted)
    }
}
