import Foundation
import LightKV
import Pipeline
import Store
import XCTest

/// Compaction lists entries first and acts on them later (on PostgreSQL, minutes later for a
/// cold re-pack): a `pin` or a fetch that lands in between keeps the entry as it is.
final class CompactionRaceTests: XCTestCase {
    func testAnEntryPinnedOrFetchedAfterBeingListedIsNotEvicted() throws {
        let f = try StoreFixture()
        let ids = try (0..<3).map { try f.ingest(try f.snapshotFile(name: "s\($0).safetensors", seed: $0)).record.id }
        let listed = try f.root.index.leastRecentlyUsed()
        XCTAssertEqual(Set(listed.map(\.id)), Set(ids))
        let (pinned, fetched, idle) = (listed[0], listed[1], listed[2])
        try f.root.index.setPinned(pinned.id, true)
        try f.root.index.touch(fetched.id, at: fetched.lastAccessed + 10)
        try f.root.index.flushAccesses(now: fetched.lastAccessed + 10)
        for record in [pinned, fetched] {
            XCTAssertNil(try f.root.removeEntry(record.id, idle: IdleCondition(lastAccessed: record.lastAccessed)))
            XCTAssertNotNil(try f.root.index.entry(id: record.id), "kept")
            XCTAssertNotNil(try f.root.blobs.attributes(record.blob), "and its blob")
        }
        XCTAssertEqual(try f.root.removeEntry(idle.id, idle: IdleCondition(lastAccessed: idle.lastAccessed))?.id, idle.id)
        XCTAssertNil(try f.root.blobs.attributes(idle.blob))
    }

    func testAnEntryPinnedWhileItsColdRepackRunsKeepsItsBlob() throws {
        let f = try StoreFixture()
        let record = try f.ingest(try f.snapshotFile(), policy: "none").record
        try f.root.index.setPinned(record.id, true)
        let outcome = try EntryRepacker(root: f.root).repack(record, policy: try Policy(parsing: "int4"),
                                                              idle: IdleCondition(lastAccessed: record.lastAccessed))
        XCTAssertEqual(outcome, .raced)
        let now = try XCTUnwrap(try f.root.index.entry(id: record.id))
        XCTAssertEqual(now.blob, record.blob, "still the exact blob")
        XCTAssertEqual(now.policy, record.policy)
        XCTAssertEqual(try f.root.blobs.names().sorted(), [record.blob], "the lossy one is gone, nothing else")
    }
}

/// `rm` removes an entry, not only the blobs its row names: another blob of the same entry (a
/// re-pack killed between publishing its blob and swapping the row leaves one) is not adopted
/// back by compaction or repair afterwards, and is collected.
final class RemovedEntryTests: XCTestCase {
    func testAnotherBlobOfARemovedEntryIsNotAdoptedBack() throws {
        let f = try StoreFixture()
        let input = try f.snapshotFile()
        let record = try f.ingest(input, policy: "none").record
        // The same entry packed under another policy, as a killed re-pack would have left it.
        let other = try StoreRoot(path: f.directory + "/other")
        let leftover = try Ingestor(root: other).ingest(path: input, policy: try Policy(parsing: "int8")).record.blob
        let path = f.root.blobs.location(leftover)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: try other.blobs.readablePath(leftover), toPath: path)
        Thread.sleep(forTimeInterval: 0.01)
        XCTAssertNotNil(try f.root.removeEntry(record.id))

        XCTAssertEqual(try Repairer(root: f.root).repair().recovered, [], "repair does not bring it back")
        var settings = CompactionSettings()
        settings.grace = 0
        _ = try Compactor(root: f.root).run(settings)
        XCTAssertNil(try f.root.index.entry(id: record.id), "nor does compaction")
        _ = try Compactor(root: f.root).run(settings)
        XCTAssertEqual(try f.root.blobs.names(), [], "the leftover is collected")

        // Ingested again on purpose, the entry is back.
        XCTAssertFalse(try f.ingest(input, policy: "none").alreadyStored)
        XCTAssertNotNil(try f.root.index.entry(id: record.id))
    }
}

/// A later question that died after publishing its part, while an `rm` tombstoned the segment
/// it names: compaction keeps the segment until the part is old enough to settle, then adopts
/// the part with it (docs/design/segments.md, the crash table's step 5). Collected first, the
/// segment left a part that no compaction could ever adopt or delete.
final class AwaitedSegmentTests: XCTestCase {
    /// Sets a blob's modification time `seconds` into the past.
    private func age(_ root: StoreRoot, _ name: String, by seconds: Int) throws {
        var times = [timespec(tv_sec: time(nil) - seconds, tv_nsec: 0), timespec(tv_sec: time(nil) - seconds, tv_nsec: 0)]
        XCTAssertEqual(utimensat(AT_FDCWD, root.blobs.location(name), &times, 0), 0)
    }

    func testASegmentAYoungPartNamesOutlivesItsTombstoneUntilThePartIsAdopted() throws {
        let f = try StoreFixture()
        let first = try f.ingest(try StoreFixture.question(f.directory, 1)).record
        let laterInput = try StoreFixture.question(f.directory, 2)
        let later = try f.ingest(laterInput).record
        let segment = try XCTUnwrap(first.segment)
        XCTAssertEqual(later.segment, segment)
        let expected = try f.fetch(later.id).bytes

        // The later question's row never went in (its process died after publishing the part),
        // and the first question was removed, tombstoning its part and the segment a while ago.
        try f.root.index.db.query("DELETE FROM entries WHERE id = ?", [.text(later.id)])
        try f.root.index.db.query("DELETE FROM sources WHERE entry_id = ?", [.text(later.id)])
        XCTAssertNotNil(try f.root.index.remove(first.id))
        try f.root.index.db.query("UPDATE doomed SET doomed_at = doomed_at - 100")
        try age(f.root, segment, by: 200)
        try age(f.root, first.blob, by: 200)

        var settings = CompactionSettings()
        settings.grace = 50
        let young = try Compactor(root: f.root).run(settings)
        XCTAssertEqual(young.doomedRemoved, 1, "the first question's part")
        XCTAssertNotNil(try f.root.blobs.attributes(segment), "kept for the part too young to settle")
        XCTAssertNil(try f.root.blobs.attributes(first.blob))

        try age(f.root, later.blob, by: 100)
        let settled = try Compactor(root: f.root).run(settings)
        XCTAssertEqual(settled.orphansAdopted, [later.id])
        XCTAssertEqual(settled.orphansKept.count, 0)
        XCTAssertEqual(try f.root.index.entry(id: later.id)?.segment, segment)
        XCTAssertEqual(try f.root.index.doomed().count, 0, "named again, the segment's tombstone is forgotten")
        XCTAssertEqual(try f.fetch(later.id).bytes, expected)
        let report = try Verifier(root: f.root).verify()
        XCTAssertTrue(report.ok)
        XCTAssertEqual(report.orphans, [])
    }
}
