import Foundation

/// Garbage collection of blob and temporary files.
///
/// The rule that makes it safe beside concurrent ingests, re-packs and fetches: a blob is
/// unlinked only inside a write transaction that found no row naming it, and a row is
/// written only inside a write transaction that found its blob present
/// (`EntryIndex.insert(_:sources:blobs:)`, `replaceBlob`). The two can never both
/// succeed for one blob, so no row ever names a collected blob. On a shared store
/// (`defersDeletion`) both also take the blob's transaction lock, and a blob that loses its
/// row is doomed, then collected by compaction after the grace period.
extension StoreRoot {
    /// Removes an entry: the row first, then its blob through the collector, so a crash in
    /// between leaves an orphan that compaction collects, and a concurrent ingest of the same
    /// snapshot that already re-published the blob keeps it. On a shared store the blob is
    /// doomed in the row's transaction instead. Returns the row removed.
    @discardableResult
    public func removeEntry(_ id: String) throws -> EntryRecord? {
        guard let removed = try index.remove(id, doom: defersDeletion) else { return nil }
        if !defersDeletion { try collectBlob(removed.blob) }
        return removed
    }

    /// Blob `name` may have lost its last row: collected now, or on a shared store doomed.
    public func retireBlob(_ name: String) throws {
        if defersDeletion { try index.doom(name) } else { try collectBlob(name) }
    }

    /// Deletes doomed blobs doomed at least `grace` seconds ago (by the index's clock) that no
    /// row names, and forgets them. Returns how many were deleted and their bytes.
    public func collectDoomed(grace: Double, dryRun: Bool = false) throws -> (count: Int, bytes: Int) {
        var collected = (count: 0, bytes: 0)
        for doomed in try index.doomed() where doomed.age >= grace {
            if dryRun {
                if try !index.isReferenced(blob: doomed.blob), let blob = try blobs.attributes(doomed.blob) {
                    collected.count += 1; collected.bytes += blob.bytes
                }
                continue
            }
            if let freed = try collectBlob(doomed.blob) { collected.count += 1; collected.bytes += freed }
            try index.forgetDoomed(doomed.blob)
        }
        return collected
    }

    /// Deletes blob `name` when no row names it and (with `minimumAge`) it was last
    /// modified more than that many seconds ago. Returns the bytes freed, nil when kept.
    @discardableResult
    public func collectBlob(_ name: String, minimumAge: Double? = nil, now: Double = Date().timeIntervalSince1970) throws -> Int? {
        try index.db.transaction {
            try index.db.transactionLock(name)
            guard try !index.isReferenced(blob: name), let blob = try blobs.attributes(name) else { return nil }
            if let minimumAge, now - blob.modified < minimumAge { return nil }
            try blobs.delete(name)
            return blob.bytes
        }
    }

    /// Files under tmp/ last modified more than `minimumAge` seconds ago and not open for
    /// writing by anyone (an ingest holds its temporary pack open until it publishes it),
    /// with their sizes.
    public func staleTemporaryFiles(minimumAge: Double, now: Double = Date().timeIntervalSince1970) -> [(path: String, bytes: Int)] {
        FileSystem.list(blobs.tempDirectory).compactMap { name in
            let path = blobs.tempDirectory + "/" + name
            guard let mtime = FileSystem.modified(path), now - mtime >= minimumAge else { return nil }
            guard WriteProbe.isOpenForWriting(path) != true else { return nil }
            return (path, FileSystem.size(path) ?? 0)
        }
    }

    /// Blob files no row names, not doomed (`collectDoomed` times those), and last modified
    /// more than `minimumAge` seconds ago. The listing comes first and the references
    /// second, so a blob published during the listing is young and skipped rather than
    /// mistaken for an orphan.
    public func orphanBlobs(minimumAge: Double, now: Double = Date().timeIntervalSince1970) throws -> [(name: String, bytes: Int, modified: Double)] {
        let inventory = try blobs.inventory()
        let referenced = try index.referencedBlobs().union(try index.doomed().map(\.blob))
        return inventory.filter { !referenced.contains($0.key) && now - $0.value.modified >= minimumAge }
            .map { ($0.key, $0.value.bytes, $0.value.modified) }.sorted { $0.name < $1.name }
    }
}
