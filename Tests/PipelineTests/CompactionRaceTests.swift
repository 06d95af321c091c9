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
