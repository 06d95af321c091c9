import Foundation
import XCTest
import Store
@testable import SharedStore

/// Multipart uploads against a live S3 server (SeaweedFS): a blob above the threshold goes up
/// in parts and comes back bit-identical; an upload aborted under it is transient and leaves
/// nothing; a stale upload is aborted by the collector only past the grace period.
final class S3MultipartTests: XCTestCase {
    /// One server for the class; each test works under a prefix of its own.
    private static var server: SeaweedFS?
    private var prefix: String!
    private var scratch: String!

    override func setUpWithError() throws {
        if Self.server == nil { Self.server = try SeaweedFS(bucket: "kvparts") }
        prefix = "t" + UUID().uuidString.lowercased()
        scratch = NSTemporaryDirectory() + "kvstore-multipart-" + UUID().uuidString
    }

    override func tearDownWithError() throws {
        if let scratch { try? FileManager.default.removeItem(atPath: scratch) }
    }

    override class func tearDown() {
        server?.stop()
        server = nil
    }

    /// A store whose blobs above 5 MiB go up in 5 MiB parts (S3's smallest), with its own cache.
    private func store(cache: String) throws -> S3BlobStore {
        var client = try Self.server!.client("s3://kvparts/\(prefix!)")
        client.multipartThreshold = S3Client.minimumPartSize
        client.partSize = S3Client.minimumPartSize
        return S3BlobStore(client: client, cache: try BlobCache(directory: "\(scratch!)/\(cache)", capacity: 1 << 30))
    }

    /// Writes `count` pseudo-random bytes to a new temp file of `store`; returns it and its content name.
    private func blob(_ store: S3BlobStore, bytes count: Int, seed: UInt64) throws -> (temp: AtomicFile, name: String, data: Data) {
        var state = seed | 1
        var words = [UInt64](repeating: 0, count: (count + 7) / 8)
        for i in words.indices {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            words[i] = state
        }
        let data = words.withUnsafeBytes { Data($0.prefix(count)) }
        let temp = try store.newTempFile()
        try data.withUnsafeBytes { try temp.write($0) }
        let digest = ContentDigest()
        data.withUnsafeBytes { digest.update($0) }
        return (temp, digest.hex, data)
    }

    func testABlobInPartsComesBackBitIdentical() throws {
        let writer = try store(cache: "writer")
        // Two whole parts and a short last one.
        let blob = try blob(writer, bytes: 2 * S3Client.minimumPartSize + 12_345, seed: 7)
        _ = try writer.publish(blob.temp, as: blob.name)
        let head = try writer.client.send("HEAD", key: writer.key(blob.name))
        XCTAssertEqual(head.headers.first(name: "content-length"), String(blob.data.count))
        XCTAssertTrue(head.headers.first(name: "etag")?.hasSuffix("-3\"") == true,
                      "a multipart object's ETag ends in its part count: \(head.headers.first(name: "etag") ?? "none")")
        XCTAssertEqual(try writer.client.listMultipartUploads(prefix: prefix).uploads, [], "the upload was completed")

        let reader = try store(cache: "reader")  // an empty cache: the blob is downloaded
        let path = try reader.readablePath(blob.name)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), blob.data)
    }

    func testPartsS3CannotTakeAreRefusedBeforeAnyRequest() throws {
        var small = try store(cache: "small")
        var client = small.client
        client.partSize = 1 << 20
        small = S3BlobStore(client: client, cache: small.cache)
        let blob = try blob(small, bytes: S3Client.minimumPartSize + 1, seed: 3)
        XCTAssertThrowsError(try small.publish(blob.temp, as: blob.name)) { error in
            guard case StoreError.io(_, let operation, EINVAL) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(operation.contains("5 MiB to 5 GiB per part"), operation)
        }

        // 10,001 parts of 5 MiB: a sparse file, never read.
        let huge = "\(scratch!)/huge.kvpack.tmp"
        XCTAssertTrue(FileManager.default.createFile(atPath: huge, contents: nil))
        XCTAssertEqual(truncate(huge, off_t(S3Client.maximumParts * S3Client.minimumPartSize + 1)), 0)
        XCTAssertThrowsError(try store(cache: "huge").client.put(prefix + "/huge", file: huge)) { error in
            guard case StoreError.io(_, let operation, EFBIG) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(operation.contains("at most 10000 parts"), operation)
        }
        XCTAssertEqual(try small.client.listMultipartUploads(prefix: prefix).uploads, [], "nothing was started")
    }

    func testAnUploadAbortedUnderItIsTransientAndLeavesNothing() throws {
        let writer = try store(cache: "writer")
        let blob = try blob(writer, bytes: 12 * S3Client.minimumPartSize, seed: 11)
        // Another node's compaction with a grace of 0 aborts every upload it sees.
        let done = DispatchSemaphore(value: 0)
        let aborted = LockedCount()
        let prefix = self.prefix!
        Thread.detachNewThread {
            while done.wait(timeout: .now()) == .timedOut {
                for upload in (try? writer.client.listMultipartUploads(prefix: prefix).uploads) ?? [] {
                    if (try? writer.client.abortMultipartUpload(upload.key, uploadID: upload.uploadID)) != nil { aborted.add() }
                }
            }
            done.signal()
        }
        var failure: Error?
        do { _ = try writer.publish(blob.temp, as: blob.name) } catch { failure = error }
        done.signal()
        done.wait()
        XCTAssertGreaterThan(aborted.value, 0)
        guard case StoreError.io(_, let operation, EAGAIN)? = failure else { return XCTFail("expected a transient error, got \(String(describing: failure))") }
        XCTAssertTrue(operation.contains("the upload was aborted"), operation)
        XCTAssertNil(try writer.attributes(blob.name), "no object appeared")
        XCTAssertEqual(try writer.client.listMultipartUploads(prefix: prefix).uploads, [], "no parts are left behind")
    }

    func testAStaleUploadIsAbortedOnlyPastTheGraceAndOnlyUnderTheStore() throws {
        let store = try store(cache: "collector")
        let client = store.client
        // What an ingest killed mid-upload leaves: an upload with one part, never completed.
        let key = store.key(String(repeating: "ab", count: 16))
        let id = try client.createMultipartUpload(key)
        _ = try [UInt8](repeating: 7, count: 1000).withUnsafeBytes { try client.uploadPart(key, uploadID: id, number: 1, bytes: $0) }
        let elsewhere = try client.createMultipartUpload(prefix + "-other/blobs/ab/x.kvpack")
        let listed = try client.listMultipartUploads(prefix: client.location.key("blobs/"))
        XCTAssertEqual(listed.uploads.map(\.key), [key])
        XCTAssertEqual(listed.uploads.map(\.uploadID), [id])
        let serverTime = try XCTUnwrap(listed.serverTime, "the server's clock comes from its Date header")
        XCTAssertEqual(serverTime, listed.uploads[0].initiated, accuracy: 5)

        XCTAssertEqual(try store.abortStaleUploads(minimumAge: 3600, dryRun: false), 0, "younger than the grace period")
        Thread.sleep(forTimeInterval: 2.1)  // the server's Date header counts whole seconds
        XCTAssertEqual(try store.abortStaleUploads(minimumAge: 1, dryRun: true), 1)
        XCTAssertEqual(try client.listMultipartUploads(prefix: prefix).uploads.count, 2, "a dry run aborts nothing")
        XCTAssertEqual(try store.abortStaleUploads(minimumAge: 1, dryRun: false), 1)
        XCTAssertEqual(try client.listMultipartUploads(prefix: prefix).uploads.map(\.uploadID), [elsewhere], "only the store's own prefix is collected")
        XCTAssertEqual(try store.abortStaleUploads(minimumAge: 0, dryRun: false), 0)
    }
}

/// A counter shared with a background thread.
private final class LockedCount: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
