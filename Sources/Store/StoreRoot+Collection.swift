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
    /// Removes an entry: the row and a tombstone for its blob in one transaction, then (on a
    /// local store) the blob through the collector. A crash in between leaves a tombstoned
    /// blob that compaction deletes, never an untombstoned orphan that compaction would adopt
    /// (docs/DESIGN.md, "The orphan rule"). A concurrent ingest of the same snapshot that
    /// already re-published the blob keeps it. On a shared store the tombstone waits out the
    /// grace period. With `idle`, only an entry still unpinned and unfetched since it was
    /// listed (compaction's eviction). Returns the row removed.
    @discardableResult
    public func removeEntry(_ id: String, idle: IdleCondition? = nil) throws -> EntryRecord? {
        guard let removed = try index.remove(id, idle: idle) else { return nil }
        guard !defersDeletion else { return removed }
        try collectBlob(removed.blob)
        // A segment that other entries still name is kept (`collectBlob` finds their rows), and
        // so is one an ingest published again after the tombstone, for the row it is about to write.
        if let segment = removed.segment { try collectBlob(segment, sparingRepublished: true) }
        return removed
    }

    /// Blob `name` may have lost its last row: tombstoned, then (locally) collected now.
    public func retireBlob(_ name: String) throws {
        try index.doom(name)
        if !defersDeletion { try collectBlob(name) }
    }

    /// Forgets the tombstones of blobs published again since (newer than their tombstone: an
    /// entry ingested anew, whose row a restored index lacks), so that the orphan pass adopts
    /// them. Forgetting deletes nothing; returns how many were forgotten.
    @discardableResult
    public func forgetRepublishedTombstones() throws -> Int {
        var forgotten = 0
        for doomed in try index.doomed() {
            // The blob's age first, the tombstone's second (see `tombstoneAge`).
            guard let blob = try blobs.attributes(doomed.blob), let tombstoneAge = try index.tombstoneAge(of: doomed.blob),
                  blob.oldest < tombstoneAge else { continue }
            try index.forgetDoomed(doomed.blob)
            forgotten += 1
        }
        return forgotten
    }

    /// Deletes tombstoned blobs tombstoned at least `grace` seconds ago (by the index's clock)
    /// that no row names and that were not published again since (a blob newer than its
    /// tombstone is an entry ingested anew: it is left for adoption), and forgets them;
    /// those in `sparing` wait (segments a part too young to settle names). Returns how many
    /// were deleted and their bytes.
    public func collectDoomed(grace: Double, dryRun: Bool = false, sparing: Set<String> = []) throws -> (count: Int, bytes: Int) {
        var collected = (count: 0, bytes: 0)
        for doomed in try index.doomed() where doomed.age >= grace && !sparing.contains(doomed.blob) {
            if dryRun {
                if try !index.isReferenced(blob: doomed.blob), let blob = try blobs.attributes(doomed.blob),
                   let tombstoneAge = try index.tombstoneAge(of: doomed.blob), blob.oldest >= tombstoneAge {
                    collected.count += 1; collected.bytes += blob.bytes
                }
                continue
            }
            if let freed = try collectBlob(doomed.blob, sparingRepublished: true) {
                collected.count += 1; collected.bytes += freed
            }
        }
        return collected
    }

    /// Deletes blob `name` when no row names it and (with `minimumAge`) it was last modified
    /// more than that many seconds ago by the blob store's clock, or (with `sparingRepublished`)
    /// not after its tombstone, if it has one; forgets its tombstone once the file is gone.
    /// Returns the bytes freed, nil when kept.
    @discardableResult
    public func collectBlob(_ name: String, minimumAge: Double? = nil, sparingRepublished: Bool = false) throws -> Int? {
        try index.db.transaction {
            try index.db.transactionLock(name)
            // Named by a row: live, whatever an older tombstone says.
            guard try !index.isReferenced(blob: name) else { try index.forgetDoomed(name); return nil }
            guard let blob = try blobs.attributes(name) else {
                try index.forgetDoomed(name)
                return nil
            }
            if let minimumAge, blob.age < minimumAge { return nil }
            // Published again after its tombstone: no longer the blob that was removed.
            if sparingRepublished, let tombstoneAge = try index.tombstoneAge(of: name), blob.oldest < tombstoneAge {
                try index.forgetDoomed(name)
                return nil
            }
            try blobs.delete(name)
            try index.forgetDoomed(name)
            try index.forgetDamaged([name])
            return blob.bytes
        }
    }

    /// Files under tmp/ last modified more than `minimumAge` seconds ago and not open for
    /// writing by anyone (an ingest holds its temporary pack open until it publishes it),
    /// with their sizes.
    public func staleTemporaryFiles(minimumAge: Double, now: Double = Date().timeIntervalSince1970) -> [(path: String, bytes: Int)] {
        FileSystem.list(blobs.tempDirectory).compactMap { name in
            let path = blobs.tempDirectory + "/" + name
            var st = stat()
            // Only files kvstore writes: a folder someone left there is not its to remove.
            guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
            guard let mtime = FileSystem.modified(path), now - mtime >= minimumAge else { return nil }
            guard WriteProbe.isOpenForWriting(path) != true else { return nil }
            return (path, FileSystem.size(path) ?? 0)
        }
    }

    /// Blob files no row names, not doomed (`collectDoomed` times those), and last modified
    /// more than `minimumAge` seconds ago by the blob store's clock. The listing comes first
    /// and the references second, so a blob published during the listing is young and skipped
    /// rather than mistaken for an orphan.
    public func orphanBlobs(minimumAge: Double) throws -> [(name: String, bytes: Int, modified: Double, age: Double)] {
        let inventory = try blobs.inventory()
        let referenced = try index.referencedBlobs().union(try index.doomed().map(\.blob))
        return inventory.filter { !referenced.contains($0.key) && $0.value.age >= minimumAge }
            .map { ($0.key, $0.value.bytes, $0.value.modified, $0.value.age) }.sorted { $0.name < $1.name }
    }
}
