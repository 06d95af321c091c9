import Foundation
import LightKV
import Pipeline
import Store
import XCTest

/// Local blobs that run `onFirstWrite` when the first pack file is started: to an ingest, a
/// producer writing the input it handed over while the input is being packed.
private final class WriterMidIngest: LocalBlobsWithHooks, @unchecked Sendable {
    var onFirstWrite: (() throws -> Void)?

    override func newTempFile() throws -> AtomicFile {
        if let hook = onFirstWrite { onFirstWrite = nil; try hook() }
        return try local.newTempFile()
    }
}

/// An input written while it is ingested is never stored under the id of the bytes hashed
/// before the write (that entry would serve other tensors, and the genuine file, sent again,
/// would be "already stored"): the ingest fails transiently and leaves no blob.
final class InputChangedTests: XCTestCase {
    func testAnInputWrittenWhileItIsPackedIsNotStoredAndLeavesNoBlob() throws {
        let f = try StoreFixture()
        let blobs = WriterMidIngest(try LocalBlobStore(root: f.directory + "/store2"))
        let root = StoreRoot(index: try EntryIndex(path: f.directory + "/store2/index.sqlite"), blobs: blobs, path: f.directory + "/store2")
        let input = try f.snapshotFile(name: "a.safetensors", seed: 1)
        let other = try Data(contentsOf: URL(fileURLWithPath: try f.snapshotFile(name: "b.safetensors", seed: 2)))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: input)).count, other.count, "the same layout, other numbers")
        usleep(20_000)  // past the kernel's timestamp tick of the file's own writing, as a handed-over file is
        blobs.onFirstWrite = {
            // In place, as a producer reusing its scratch file does: same size, new bytes.
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: input))
            try handle.write(contentsOf: other)
            try handle.close()
        }
        XCTAssertThrowsError(try Ingestor(root: root).ingest(path: input, policy: Policy(parsing: "int8"))) { error in
            guard let e = error as? StoreError, e.isTransient else { return XCTFail("\(error)") }
            XCTAssertTrue("\(e)".contains("written while it was read"), "\(e)")
        }
        XCTAssertEqual(try root.index.count(), 0)
        XCTAssertEqual(try blobs.names(), [], "what was packed from the changing file is collected")

        // Read again once it is complete: stored under its own id, as the other file would be.
        let stored = try Ingestor(root: root).ingest(path: input, policy: Policy(parsing: "int8")).record
        XCTAssertEqual(stored.id, try f.ingest(try f.snapshotFile(name: "c.safetensors", seed: 2), policy: "int8").record.id)
    }

    /// An input cut short while it is packed (its producer truncated the file it handed over):
    /// the reads past its new end fault (SIGBUS), which killed the process, every ingest in
    /// flight with it. They read zeros, and the ingest fails as the file changed.
    func testAnInputTruncatedWhileItIsPackedFailsWithoutKillingTheProcess() throws {
        let f = try StoreFixture()
        let blobs = WriterMidIngest(try LocalBlobStore(root: f.directory + "/store2"))
        let root = StoreRoot(index: try EntryIndex(path: f.directory + "/store2/index.sqlite"), blobs: blobs, path: f.directory + "/store2")
        let input = try f.snapshotFile(name: "a.safetensors", seed: 1, layers: 12)
        XCTAssertGreaterThan(try Data(contentsOf: URL(fileURLWithPath: input)).count, 8 * 4096, "pages past the cut")
        blobs.onFirstWrite = { XCTAssertEqual(truncate(input, 100), 0) }
        XCTAssertThrowsError(try Ingestor(root: root).ingest(path: input, policy: Policy(parsing: "int8"))) { error in
            guard let e = error as? StoreError, e.isTransient else { return XCTFail("\(error)") }
            XCTAssertTrue("\(e)".contains("written while it was read"), "\(e)")
        }
        XCTAssertEqual(try root.index.count(), 0)
        XCTAssertEqual(try blobs.names(), [])
    }
}
