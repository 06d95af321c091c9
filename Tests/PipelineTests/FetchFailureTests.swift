import Foundation
import LightKV
import Pipeline
import Store
import XCTest

/// A fetch whose output fails while its blobs' content is being checked beside it: the
/// damage is what it reports (exit 3, not "disk full, retry"), every thread ends, and nothing
/// is published.
final class FetchFailureTests: XCTestCase {
    /// A positional file-like sink that refuses every write as a full disk would.
    private final class FullDisk: FetchSink {
        var finished = false
        var isPositional: Bool { true }
        var publishesWhenFinished: Bool { true }
        func write(_ bytes: UnsafeRawBufferPointer) throws { throw StoreError.io(path: "full", operation: "write", errno: ENOSPC) }
        func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws { try write(bytes) }
        func finish() throws { finished = true }
    }

    /// The entry's own earlier blob in the place of its current one: whole, naming the right
    /// entry, so only the content name tells it apart.
    private func entryWithItsEarlierBlobInPlace(_ f: StoreFixture) throws -> EntryRecord {
        let id = try f.ingest(try f.snapshotFile(layers: 6), policy: "lightkv+int8").record.id
        let before = try f.root.index.resolve(id)
        let earlier = try Data(contentsOf: URL(fileURLWithPath: try f.root.blobs.readablePath(before.blob)))
        _ = try EntryRepacker(root: f.root).repack(before, policy: try Policy(parsing: "none"))
        let after = try f.root.index.resolve(id)
        let path = try f.root.blobs.readablePath(after.blob)
        try FileManager.default.removeItem(atPath: path)
        try earlier.write(to: URL(fileURLWithPath: path))
        return after
    }

    func testADamagedBlobIsReportedAsDamageWhenTheOutputFailsToo() throws {
        let f = try StoreFixture()
        let record = try entryWithItsEarlierBlobInPlace(f)
        for options in [FetchOptions(), FetchOptions(expand: true), FetchOptions(raw: true), FetchOptions(dtype: .f32)] {
            let sink = FullDisk()
            XCTAssertThrowsError(try Fetcher(root: f.root).fetch(record, options: options, to: sink)) { error in
                guard case StoreError.corrupt(_, let problem) = error else { return XCTFail("\(options): \(error)") }
                XCTAssertTrue(problem.contains("content is"), problem)
            }
            XCTAssertFalse(sink.finished, "nothing is published")
        }
    }

    func testAFullDiskIsReportedAsSuchWhenTheBlobIsIntact() throws {
        let f = try StoreFixture()
        let id = try f.ingest(try f.snapshotFile(layers: 6), policy: "lightkv+int8").record.id
        let sink = FullDisk()
        XCTAssertThrowsError(try Fetcher(root: f.root).fetch(try f.root.index.resolve(id), options: FetchOptions(), to: sink)) { error in
            guard case StoreError.io(_, _, let e) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(e, ENOSPC)
        }
        XCTAssertFalse(sink.finished)
    }
}
