import Foundation
import XCTest
import Store
@testable import SharedStore

/// The node cache admits only copies whose content matches their name, never hands out a
/// damaged one, and evicts the least recently used first.
final class BlobCacheTests: XCTestCase {
    private var directory: String!

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "kvstore-cache-" + UUID().uuidString
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

    private func blob(_ seed: UInt8) -> (name: String, bytes: Data) {
        let bytes = Data((0..<100).map { UInt8(truncatingIfNeeded: Int($0) &* 7 &+ Int(seed)) })
        let digest = ContentDigest()
        bytes.withUnsafeBytes { digest.update($0) }
        return (digest.hex, bytes)
    }

    private func fill(_ cache: BlobCache, _ blob: (name: String, bytes: Data)) throws -> String {
        try cache.fill(blob.name, source: "s3://test/\(blob.name)") { try blob.bytes.write(to: URL(fileURLWithPath: $0)) }
    }

    func testOnlyACopyWhoseContentMatchesItsNameIsAdmitted() throws {
        let cache = try BlobCache(directory: directory, capacity: 1 << 20)
        let a = blob(1), b = blob(2)
        XCTAssertThrowsError(try cache.fill(a.name, source: "s3://test/a") { try b.bytes.write(to: URL(fileURLWithPath: $0)) }) { error in
            guard case StoreError.corrupt(let path, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, "s3://test/a")
        }
        XCTAssertNil(cache.verifiedCopy(a.name))
        XCTAssertEqual(FileSystem.list(cache.tempDirectory), [], "the refused download is deleted")
        let path = try fill(cache, a)
        XCTAssertEqual(cache.verifiedCopy(a.name), path)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), a.bytes)
    }

    func testADamagedCopyIsDeletedNotHandedOut() throws {
        let cache = try BlobCache(directory: directory, capacity: 1 << 20)
        let a = blob(1)
        let path = try fill(cache, a)
        var damaged = a.bytes
        damaged[50] ^= 0xff
        try damaged.write(to: URL(fileURLWithPath: path))
        XCTAssertNil(cache.verifiedCopy(a.name))
        XCTAssertFalse(FileSystem.exists(path))
    }

    func testTheLeastRecentlyUsedCopiesAreEvictedFirst() throws {
        let cache = try BlobCache(directory: directory, capacity: 250)
        let a = blob(1), b = blob(2), c = blob(3)
        let pathA = try fill(cache, a), pathB = try fill(cache, b)
        let now = Date().timeIntervalSince1970
        for (path, age) in [(pathA, 200.0), (pathB, 100.0)] {
            var times = [timeval(tv_sec: Int(now - age), tv_usec: 0), timeval(tv_sec: Int(now - age), tv_usec: 0)]
            XCTAssertEqual(utimes(path, &times), 0)
        }
        XCTAssertNotNil(cache.verifiedCopy(a.name), "a use makes a the most recently used")
        let pathC = try fill(cache, c)  // 300 bytes > 250: evict down to 225
        XCTAssertTrue(FileSystem.exists(pathA))
        XCTAssertFalse(FileSystem.exists(pathB), "b was used least recently")
        XCTAssertTrue(FileSystem.exists(pathC), "the copy just filled is kept")
    }

    /// A copy handed out in the last minute may be about to be opened by another process: it
    /// is spared, and the cache holds more than its capacity meanwhile.
    func testACopyInUseIsNotEvicted() throws {
        let cache = try BlobCache(directory: directory, capacity: 150)
        let a = blob(1), b = blob(2)
        let pathA = try fill(cache, a)
        let pathB = try fill(cache, b)  // 200 bytes > 150, but a was filled a moment ago
        XCTAssertTrue(FileSystem.exists(pathA))
        XCTAssertTrue(FileSystem.exists(pathB))
        let old = Date().timeIntervalSince1970 - BlobCache.inUseSeconds - 1
        var times = [timeval(tv_sec: Int(old), tv_usec: 0), timeval(tv_sec: Int(old), tv_usec: 0)]
        XCTAssertEqual(utimes(pathA, &times), 0)
        _ = try fill(cache, blob(3))
        XCTAssertFalse(FileSystem.exists(pathA), "no longer in use: evicted")
        XCTAssertTrue(FileSystem.exists(pathB))
    }
}
