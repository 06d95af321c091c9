import Foundation
import XCTest
import LightKV
@testable import Pipeline
import Store

/// The rule that lets compaction run beside ingests: a blob a row names is never
/// collected, and a row is never written for a blob that was.
final class BlobCollectionTests: XCTestCase {
    func testAReferencedBlobIsNeverCollected() throws {
        let f = try StoreFixture()
        let record = try f.ingest(try f.snapshotFile()).record
        XCTAssertNil(try f.root.collectBlob(record.blob))
        XCTAssertTrue(FileSystem.exists(f.root.blobs.location(record.blob)))
        XCTAssertEqual(try f.root.orphanBlobs(minimumAge: 0).count, 0)
    }

    func testAnIndexRowIsRefusedWhenItsBlobWasCollected() throws {
        let f = try StoreFixture()
        var record = try f.ingest(try f.snapshotFile()).record
        record.id = String(repeating: "ab", count: 32)
        record.blob = String(repeating: "cd", count: 16)
        XCTAssertThrowsError(try f.root.index.insert(record, sources: [], blobs: f.root.blobs)) { error in
            XCTAssertTrue((error as? StoreError)?.isTransient == true, "\(error): the ingest retries")
        }
        XCTAssertNil(try f.root.index.entry(id: record.id))
    }

    func testOrphansAreCollectedOnlyAfterTheGracePeriod() throws {
        let f = try StoreFixture()
        let record = try f.ingest(try f.snapshotFile()).record
        // A row lost without a tombstone (a crash, a restored index): an orphan.
        try f.root.index.db.query("DELETE FROM entries WHERE id = ?", [.text(record.id)])
        XCTAssertEqual(try f.root.orphanBlobs(minimumAge: 3600).count, 0, "young: maybe an ingest about to index it")
        XCTAssertNil(try f.root.collectBlob(record.blob, minimumAge: 3600))
        XCTAssertEqual(try f.root.orphanBlobs(minimumAge: 0).map(\.name), [record.blob])
        XCTAssertEqual(try f.root.collectBlob(record.blob, minimumAge: 0), record.bytesOut)
        XCTAssertFalse(FileSystem.exists(f.root.blobs.location(record.blob)))
    }

    func testRepackKeepsTheIdAndTheTensorsAndCollectsTheOldBlob() throws {
        let f = try StoreFixture()
        let record = try f.ingest(try f.snapshotFile(seed: 4)).record
        let before = try f.fetch(record.id)
        let outcome = try EntryRepacker(root: f.root).repack(record, policy: try Policy(parsing: "none+lz4"))
        guard case .swapped = outcome else { return XCTFail("\(outcome)") }
        let after = try XCTUnwrap(try f.root.index.entry(id: record.id))
        XCTAssertEqual(after.policy, "none+lz4")
        XCTAssertNotEqual(after.blob, record.blob)
        XCTAssertFalse(FileSystem.exists(f.root.blobs.location(record.blob)), "the old blob is collected after the swap")
        let fetched = try f.fetch(record.id)
        for i in 0..<3 {
            XCTAssertEqual(Array(before.snapshot.data(before.snapshot.layers[i].key)), Array(fetched.snapshot.data(fetched.snapshot.layers[i].key)))
            XCTAssertEqual(Array(before.snapshot.data(before.snapshot.layers[i].value)), Array(fetched.snapshot.data(fetched.snapshot.layers[i].value)))
        }
        XCTAssertEqual(try f.root.index.cold(before: Date().timeIntervalSince1970 + 1, notPolicy: "none+lz4").count, 0,
                       "an entry already in the cold policy is not re-packed again")
        XCTAssertEqual(FileSystem.list(f.root.blobs.tempDirectory), [], "no temporary file is left")
    }

    func testARepackOfAnEntryRemovedMeanwhileChangesNothing() throws {
        let f = try StoreFixture()
        let record = try f.ingest(try f.snapshotFile()).record
        _ = try f.root.index.remove(record.id)  // removed; its blob not collected yet
        XCTAssertEqual(try EntryRepacker(root: f.root).repack(record, policy: try Policy(parsing: "none+lz4")), .raced)
        XCTAssertNil(try f.root.index.entry(id: record.id), "the swap matched no row")
        XCTAssertEqual(try f.root.orphanBlobs(minimumAge: 0).map(\.name), [], "the new blob was collected at once")
        XCTAssertEqual(try f.root.index.doomed().map(\.blob), [record.blob], "the removed entry's blob is tombstoned, not an orphan")
    }
}
