import AsyncHTTPClient
import Foundation
import Store

/// Multipart upload (S3 API reference: CreateMultipartUpload, UploadPart,
/// CompleteMultipartUpload, AbortMultipartUpload, ListMultipartUploads).
///
/// The object appears only when the upload is completed; until then its parts are held by
/// the server under an upload id. A failed upload is aborted at once, best-effort; one whose
/// process died is aborted later by compaction (`S3BlobStore.abortStaleUploads`).
extension S3Client {
    /// S3's smallest part (every part but the last) and largest part count.
    public static let minimumPartSize = 5 << 20
    public static let maximumParts = 10_000

    /// Uploads `file` as object `key` in parts of `partSize`, each part's SHA-256 signed as
    /// its body hash and read straight from the map. Any failure aborts the upload.
    func putMultipart(_ key: String, file: MappedFile) throws {
        let url = location.url(ofKey: key)
        let size = file.bytes.count
        guard (Self.minimumPartSize...Self.singlePutLimit).contains(partSize) else {
            throw StoreError.io(path: url, operation: "multipart upload with parts of \(partSize) bytes (S3 takes 5 MiB to 5 GiB per part)", errno: EINVAL)
        }
        let parts = (size + partSize - 1) / partSize
        guard parts <= Self.maximumParts else {
            throw StoreError.io(path: url, operation: "upload of \(size) bytes (\(parts) parts of \(partSize) bytes; S3 takes at most \(Self.maximumParts) parts)", errno: EFBIG)
        }
        let uploadID = try createMultipartUpload(key)
        do {
            let etags = try uploadParts(key, uploadID: uploadID, file: file, count: parts)
            try completeMultipartUpload(key, uploadID: uploadID, etags: etags)
        } catch {
            try? abortMultipartUpload(key, uploadID: uploadID)
            throw Self.uploadGone(error)
        }
    }

    /// Uploads the `count` parts of `file`, `partsInFlight` at a time (one request waiting
    /// on the server while the next is hashed and sent); returns their ETags in order. The
    /// first failure stops the parts not yet started and is thrown once all have stopped.
    func uploadParts(_ key: String, uploadID: String, file: MappedFile, count: Int) throws -> [String] {
        let parts = PartQueue(count: count)
        let group = DispatchGroup()
        for _ in 0..<min(max(1, partsInFlight), count) {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                while let number = parts.take() {
                    let range = (number - 1) * partSize..<min(number * partSize, file.bytes.count)
                    do {
                        parts.finish(number, etag: try uploadPart(key, uploadID: uploadID, number: number,
                                                                  bytes: UnsafeRawBufferPointer(rebasing: file.bytes[range])))
                    } catch {
                        parts.fail(error)
                    }
                    // Sent (or failed): drop the part's pages so an upload holds about `partsInFlight` parts.
                    file.release(range)
                }
            }
        }
        group.wait()
        return try parts.etags()
    }

    /// Starts an upload of object `key`; returns its upload id.
    func createMultipartUpload(_ key: String) throws -> String {
        let response = try send("POST", key: key, query: [("uploads", "")], body: .bytes(Data()))
        let xml = response.body.map { String(buffer: $0) } ?? ""
        guard let id = S3Listing.firstValue(of: "UploadId", in: xml), !id.isEmpty else {
            throw StoreError.io(path: location.url(ofKey: key), operation: "CreateMultipartUpload (no UploadId in the answer: \(xml.prefix(200)))", errno: EIO)
        }
        return id
    }

    /// Uploads part `number` (from 1); returns the ETag the server gave it.
    func uploadPart(_ key: String, uploadID: String, number: Int, bytes: UnsafeRawBufferPointer) throws -> String {
        let hash = SHA256Hasher.digest(bytes).hexString
        let response = try send("PUT", key: key, query: [("partNumber", String(number)), ("uploadId", uploadID)],
                                payloadHash: hash, body: .bytes(Self.view(bytes)))
        guard let etag = response.headers.first(name: "etag"), !etag.isEmpty else {
            throw StoreError.io(path: location.url(ofKey: key), operation: "UploadPart \(number) (no ETag in the answer)", errno: EIO)
        }
        return etag
    }

    /// Completes the upload from its parts' ETags, in order. S3 may answer 200 and still
    /// report an error in the body: that is checked too.
    func completeMultipartUpload(_ key: String, uploadID: String, etags: [String]) throws {
        let parts = etags.enumerated().map { "<Part><PartNumber>\($0.offset + 1)</PartNumber><ETag>\(Self.xmlEscaped($0.element))</ETag></Part>" }
        let xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\(parts.joined())</CompleteMultipartUpload>"
        let response = try send("POST", key: key, query: [("uploadId", uploadID)], payloadHash: SigV4.sha256Hex(xml), body: .bytes(Data(xml.utf8)))
        let answer = response.body.map { String(buffer: $0) } ?? ""
        if answer.contains("<Error>") {
            let code = S3Listing.firstValue(of: "Code", in: answer) ?? "unknown"
            let transient = ["InternalError", "SlowDown", "ServiceUnavailable", "RequestTimeout", "NoSuchUpload"].contains(code)
            throw StoreError.io(path: location.url(ofKey: key), operation: "CompleteMultipartUpload (\(code))", errno: transient ? EAGAIN : EIO)
        }
    }

    /// Aborts an upload, freeing its parts. An upload already gone (completed or aborted) is
    /// `StoreError.io` with ENOENT.
    public func abortMultipartUpload(_ key: String, uploadID: String) throws {
        _ = try send("DELETE", key: key, query: [("uploadId", uploadID)])
    }

    /// Every incomplete upload of a key starting with `prefix`, a page of up to 1,000 at a
    /// time, and the server's clock when the first page was answered (its `Date` header;
    /// nil when it sent none).
    public func listMultipartUploads(prefix: String) throws -> (uploads: [S3UploadListing.Upload], serverTime: Double?) {
        var uploads: [S3UploadListing.Upload] = []
        var serverTime: Double?
        var marker: (key: String, uploadID: String)?
        repeat {
            var query = [("uploads", ""), ("prefix", prefix)]
            if let marker { query += [("key-marker", marker.key), ("upload-id-marker", marker.uploadID)] }
            let response = try send("GET", key: nil, query: query)
            if serverTime == nil {
                serverTime = response.headers.first(name: "date").flatMap(S3Dates.httpDate)?.timeIntervalSince1970
            }
            let page = try S3UploadListing(xml: response.body.map { String(buffer: $0) } ?? "", url: location.url(ofKey: prefix))
            uploads += page.uploads
            marker = page.next
        } while marker != nil
        return (uploads, serverTime)
    }

    /// A part or completion refused because the upload no longer exists means a compaction
    /// aborted it as stale: transient, the caller uploads again.
    static func uploadGone(_ error: Error) -> Error {
        guard case StoreError.io(let url, let operation, ENOENT) = error else { return error }
        return StoreError.io(path: url, operation: "\(operation): the upload was aborted (by a compaction collecting stale uploads?)", errno: EAGAIN)
    }

    /// Parts handed out to the upload threads, and what came back.
    private final class PartQueue: @unchecked Sendable {
        private let lock = NSLock()
        private var next = 1
        private var tags: [String?]
        private var failure: Error?

        init(count: Int) { tags = Array(repeating: nil, count: count) }

        /// The next part number to upload; nil when all are handed out or one failed.
        func take() -> Int? {
            lock.lock(); defer { lock.unlock() }
            guard failure == nil, next <= tags.count else { return nil }
            next += 1
            return next - 1
        }

        func finish(_ number: Int, etag: String) { lock.lock(); tags[number - 1] = etag; lock.unlock() }

        func fail(_ error: Error) { lock.lock(); if failure == nil { failure = error }; lock.unlock() }

        func etags() throws -> [String] {
            lock.lock(); defer { lock.unlock() }
            if let failure { throw failure }
            return tags.map { $0! }
        }
    }

    static func xmlEscaped(_ text: String) -> String {
        [("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")].reduce(text) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
    }
}
