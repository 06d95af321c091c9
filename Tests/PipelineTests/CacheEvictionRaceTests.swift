import Foundation
import LightKV
import Pipeline
import Store
import XCTest

/// Blobs held elsewhere and read through local copies, as an object store's node cache holds
/// them, whose copies another process may evict: a copy of a blob named in `vanishing` is
/// handed out and gone before it is opened, `vanishing[name]` times.
private final class EvictedCopies: LocalBlobsWithHooks, @unchecked Sendable {
    private let lock = NSLock()
    var vanishing: [String: Int] = [:]

    override var isShared: Bool { true }
    override func readablePath(_ name: String) throws -> String {
        lock.lock(); defer { lock.unlock() }
        if let left = vanishing[name], left > 0 {
            vanishing[name] = left - 1
            return local.tempDirectory + "/evicted-" + name
        }
        return try local.readablePath(name)
    }
}

/// A node's cached copy evicted by another process between being handed out and opened is
/// read again, never taken for a missing or damaged blob: not by a fetch, and not by
/// compaction, which once deleted a segment its orphan part needed on such a read.
final class CacheEvictionRaceTests: XCTestCase {
    private func store() throws -> (String, EvictedCopies, StoreRoot) {
        let directory = NSTemporaryDirectory() + "kvstore-evicted-" + UUID().uuidString
        let blobs = EvictedCopies(try LocalBlobStore(root: directory))
        return (directory, blobs, StoreRoot(index: try EntryIndex(path: directory + "/index.sqlite"), blobs: blobs, path: directory))
    }

    private func compact(_ root: StoreRoot) throws -> CompactionReport {
        var settings = CompactionSettings()
        settings.grace = 0
        settings.verifySample = 0
        return try Compactor(root: root).run(settings)
    }

    func testAFetchReadsAgainACopyEvictedBeforeItWasOpened() throws {
        let (directory, blobs, root) = try store()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let record = try Ingestor(root: root).ingest(path: try StoreFixture.question(directory, 1), policy: Policy(parsing: "int8")).record
        let segment = try XCTUnwrap(record.segment)
        blobs.vanishing = [record.blob: 1, segment: 1]
        try Fetcher(root: root).fetch(record, options: FetchOptions(), to: try OutputSink(path: directory + "/evicted.safetensors"))
        try Fetcher(root: root).fetch(record, options: FetchOptions(), to: try OutputSink(path: directory + "/calm.safetensors"))
        XCTAssertEqual(FileManager.default.contents(atPath: directory + "/evicted.safetensors"),
                       FileManager.default.contents(atPath: directory + "/calm.safetensors"))
        blobs.vanishing = [segment: 2]
        XCTAssertNil(try Verifier(root: root).damage(of: record))
    }

    func testCompactionAdoptsAnOrphanWhoseSegmentCopyWasEvictedAndKeepsASegmentAKeptPartNames() throws {
        let (directory, blobs, root) = try store()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let record = try Ingestor(root: root).ingest(path: try StoreFixture.question(directory, 1), policy: Policy(parsing: "int8")).record
        let segment = try XCTUnwrap(record.segment)

        // The row is lost (an index restored from a backup); the segment's copy is evicted
        // under each of the first two reads.
        try root.index.db.query("DELETE FROM entries WHERE id = ?", [.text(record.id)])
        blobs.vanishing = [segment: 2]
        var report = try compact(root)
        XCTAssertEqual(report.orphansAdopted, [record.id])
        XCTAssertEqual(report.orphansRemoved, 0)
        XCTAssertNotNil(try root.index.entry(id: record.id))

        // A segment that does not read back (a byte changed): the part is kept, and so is the
        // segment it names (it was deleted as a segment no row named), for whoever restores it.
        try root.index.db.query("DELETE FROM entries WHERE id = ?", [.text(record.id)])
        let path = blobs.local.location(segment)
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: path))
        let intact = bytes
        bytes[bytes.count / 2] ^= 0x10  // inside a layer: the pack still opens
        try bytes.write(to: URL(fileURLWithPath: path))
        report = try compact(root)
        XCTAssertEqual(report.orphansKept.map(\.id), [record.blob])
        XCTAssertEqual(report.orphansRemoved, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path), "the segment a kept part names")

        try intact.write(to: URL(fileURLWithPath: path))
        report = try compact(root)
        XCTAssertEqual(report.orphansAdopted, [record.id], "adopted once the segment reads back")
    }

    /// An entry removed (and its segment collected) between reading its row and opening its
    /// segment is not found (exit 2), not damaged (exit 3).
    func testASegmentGoneWithItsEntryIsNotFoundNotDamage() throws {
        let (directory, blobs, root) = try store()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let record = try Ingestor(root: root).ingest(path: try StoreFixture.question(directory, 1), policy: Policy(parsing: "int8")).record
        try root.index.db.query("DELETE FROM entries WHERE id = ?", [.text(record.id)])
        try blobs.local.delete(try XCTUnwrap(record.segment))
        XCTAssertThrowsError(try Fetcher(root: root).fetch(record, options: FetchOptions(), to: try OutputSink(path: directory + "/o.safetensors"))) {
            guard case StoreError.notFound(let what) = $0 else { return XCTFail("\($0)") }
            XCTAssertTrue(what.contains("removed while fetching"), what)
        }
    }
}
