import Foundation
import LightKV
import Pipeline
import Store
import XCTest

/// What compaction's collection may take and what it must leave.
final class CollectionSafetyTests: XCTestCase {
    /// A folder left under tmp/ is not kvstore's temporary file: it is neither removed nor
    /// allowed to stop compaction (it used to fail the whole run with EISDIR).
    func testAFolderUnderTmpIsLeftAloneAndCompactionRuns() throws {
        let f = try StoreFixture()
        let folder = f.root.blobs.tempDirectory + "/leftover"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var old = [timespec(tv_sec: 1_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000, tv_nsec: 0)]
        XCTAssertEqual(utimensat(AT_FDCWD, folder, &old, 0), 0)
        XCTAssertTrue(f.root.staleTemporaryFiles(minimumAge: 0).isEmpty)
        var settings = CompactionSettings()
        settings.grace = 0
        XCTAssertNoThrow(try Compactor(root: f.root).run(settings))
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder))
    }

    /// A blob's modification time is when it was published, not when its last byte was
    /// written: a segment published again after an `rm` tombstoned it is kept by that time.
    func testAPublishedBlobIsModifiedWhenPublished() throws {
        let f = try StoreFixture()
        let temp = try f.root.blobs.newTempFile()
        try temp.write(Array("bytes".utf8))
        var old = [timespec(tv_sec: 1_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000, tv_nsec: 0)]
        XCTAssertEqual(utimensat(AT_FDCWD, temp.tempPath, &old, 0), 0)
        let before = Date().timeIntervalSince1970 - 1
        _ = try f.root.blobs.publish(temp, as: "00112233445566778899aabbccddeeff")
        let modified = try XCTUnwrap(try f.root.blobs.attributes("00112233445566778899aabbccddeeff")).modified
        XCTAssertGreaterThanOrEqual(modified, before)
    }
}

/// A binary older than the index it opens (a fleet mid-upgrade) reads it, but neither
/// compacts nor repairs it: it would read what it does not know as damage.
final class NewerIndexTests: XCTestCase {
    func testCompactionAndRepairRefuseAnIndexMigratedByANewerKvstore() throws {
        let f = try StoreFixture()
        let id = try f.ingest(try f.snapshotFile()).record.id
        try f.root.index.db.query("INSERT INTO migrations (name, applied_at) VALUES ('9999_from_the_future', 0)")
        let root = try StoreRoot(path: f.directory + "/store")
        XCTAssertEqual(root.index.newerMigrations, ["9999_from_the_future"])
        XCTAssertNotNil(try root.index.entry(id: id), "still read")
        var settings = CompactionSettings()
        settings.grace = 0
        XCTAssertThrowsError(try Compactor(root: root).run(settings)) { XCTAssertTrue("\($0)".contains("newer kvstore"), "\($0)") }
        XCTAssertThrowsError(try Repairer(root: root).repair()) { XCTAssertTrue("\($0)".contains("9999_from_the_future"), "\($0)") }
        settings.dryRun = true
        XCTAssertNoThrow(try Compactor(root: root).run(settings))
    }
}
