import Foundation
import XCTest
import Store

/// The `BlobStore` contract, on the local directory: what is published is listed, readable
/// through a local file and sized; what is deleted is gone; a missing blob reads as ENOENT.
final class LocalBlobStoreTests: XCTestCase {
    func testAPublishedBlobIsListedReadableAndDeletable() throws {
        let directory = NSTemporaryDirectory() + "kvstore-blobs-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let blobs = try LocalBlobStore(root: directory)
        let name = String(repeating: "ab", count: 16)
        let bytes: [UInt8] = Array(0..<200)

        let temp = try blobs.newTempFile()
        XCTAssertTrue(temp.tempPath.hasPrefix(blobs.tempDirectory + "/"))
        try bytes.withUnsafeBytes { try temp.write($0) }
        let path = try blobs.publish(temp, as: name)

        XCTAssertEqual(path, directory + "/blobs/ab/\(name).kvpack")
        XCTAssertEqual(try blobs.readablePath(name), path)
        XCTAssertEqual(blobs.location(name), path)
        XCTAssertEqual(try blobs.names(), [name])
        XCTAssertEqual(try blobs.attributes(name)?.bytes, 200)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), Data(bytes))
        XCTAssertEqual(FileSystem.list(blobs.tempDirectory), [], "the temporary file became the blob")

        try blobs.delete(name)
        XCTAssertNil(try blobs.attributes(name))
        XCTAssertEqual(try blobs.names(), [])
        XCTAssertThrowsError(try MappedFile(path: blobs.readablePath(name))) { error in
            guard case StoreError.io(_, _, ENOENT) = error else { return XCTFail("\(error)") }
        }
    }
}
