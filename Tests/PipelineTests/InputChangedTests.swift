import Foundation
import LightKV
import Pipeline
import Store
import XCTest

/// Local blobs that run `onFirstWrite` when the first pack file is started: to an ingest, a
/// producer writing the input it handed over while the input is being packed.
private final class WriterMidIngest: BlobStore, @unchecked Sendable {
    let local: LocalBlobStore
    var onFirstWrite: (() throws -> Void)?

    init(_ local: LocalBlobStore) { self.local = local }

    var tempDirectory: String { local.tempDirectory }
    func newTempFile() throws -> AtomicFile {
        if let hook = onFirstWrite { onFirstWrite = nil; try hook() }
        return try local.newTempFile()
    }
    func publish(_ temp: AtomicFile, as name: String) throws -> String { try local.publish(temp, as: name) }
    func readablePath(_ name: String) throws -> String { try local.readablePath(name) }
    func location(_ name: String) -> String { local.location(name) }
    func storeMarker() throws -> String? { try local.storeMarker() }
    func writeStoreMarker(_ id: String) throws { try local.writeStoreMarker(id) }
    func attributes(_ name: String) throws -> BlobAttributes? { try local.attributes(name) }
    func names() throws -> [String] { try local.names() }
    func delete(_ name: String) throws { try local.delete(name) }
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
}
