import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Store

/// The S3 requests a blob store needs — PUT (single or multipart), GET (whole or a byte
/// range), HEAD, DELETE, LIST (ListObjectsV2) and ListMultipartUploads — path-style and
/// signed with `SigV4`, as blocking calls for the store's synchronous callers.
///
/// Failures are `StoreError.io` naming the object's s3:// URL: ENOENT for 404 (an object that
/// is not there), EAGAIN (exit code 4, retried by the daemon) for 5xx, 429, an unreachable
/// server, and what is wrong with the store's settings rather than with any input: a 403
/// (credentials refused, expired, or a clock too far off) and a bucket that does not exist,
/// each named; EIO for any other refusal.
public struct S3Client: Sendable {
    public let location: S3Location
    let signer: SigV4
    let http: HTTPClient

    /// Files larger than this go up as a multipart upload (`S3Client+Multipart.swift`).
    public var multipartThreshold = 64 << 20
    /// Bytes per part of a multipart upload (the last part may be smaller). S3 takes 5 MiB to
    /// 5 GiB per part and at most 10,000 parts, so 64 MiB parts carry blobs up to 625 GiB.
    public var partSize = 64 << 20
    /// Parts sent at once: while one waits for the server to store it, the next is hashed
    /// and sent (docs/BENCHMARKS.md).
    public var partsInFlight = 4

    /// The most one PUT may carry (S3's limit); larger files always go up in parts.
    public static let singlePutLimit = 5 << 30

    /// A request that has not finished by then fails as transient.
    static let deadline: TimeAmount = .minutes(10)
    /// A HEAD carries no body: a server that has not answered one in this long is not going
    /// to, and an insert's presence check runs under the blobs' index locks, where waiting out
    /// the read timeout (120 s) held every other writer of those blobs, and compaction, as long.
    static let headDeadline: TimeAmount = .seconds(15)

    public init(location: S3Location) {
        self.location = location
        signer = SigV4(accessKeyID: location.accessKeyID, secretAccessKey: location.secretAccessKey, region: location.region)
        http = s3HTTPClient
    }

    /// Uploads the file at `path` as object `key`, with each request's SHA-256 signed so the
    /// server refuses a body damaged on the way: in one PUT up to `multipartThreshold`, in
    /// parts above it. The object appears whole or not at all.
    public func put(_ key: String, file path: String) throws {
        let file = try MappedFile(path: path)
        if file.bytes.count > min(multipartThreshold, Self.singlePutLimit) {
            return try putMultipart(key, file: file)
        }
        let hash = SHA256Hasher.digest(file.bytes).hexString
        // The map outlives the request: `send` waits for it to finish.
        try withExtendedLifetime(file) {
            _ = try send("PUT", key: key, payloadHash: hash, body: .bytes(Self.view(file.bytes)))
        }
    }

    /// `bytes` as Data without copying them; valid only while their owner lives.
    static func view(_ bytes: UnsafeRawBufferPointer) -> Data {
        bytes.baseAddress.map { Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: $0), count: bytes.count, deallocator: .none) } ?? Data()
    }

    /// Downloads object `key` (or the bytes in `range`) into a new file at `path`.
    public func get(_ key: String, to path: String, range: ClosedRange<Int>? = nil) throws {
        var headers: [String: String] = [:]
        if let range { headers["range"] = "bytes=\(range.lowerBound)-\(range.upperBound)" }
        let request = try self.request("GET", key: key, headers: headers)
        let url = location.url(ofKey: key)
        let progress: FileDownloadDelegate.Progress
        do {
            let delegate = try FileDownloadDelegate(path: path)
            progress = try http.execute(request: request, delegate: delegate, deadline: .now() + Self.deadline).futureResult.wait()
        } catch {
            try? FileSystem.remove(path)
            throw Self.unreachable(url, "GET", error)
        }
        let status = progress.head.status.code
        guard (200..<300).contains(status) else {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            try? FileSystem.remove(path)
            throw Self.refused(url, "GET", status: Int(status), body: text)
        }
        // A 0-byte body creates no file.
        if !FileSystem.exists(path) { try Data().write(to: URL(fileURLWithPath: path)) }
    }

    /// The object's size and Last-Modified, or nil when there is none.
    public func head(_ key: String) throws -> BlobAttributes? {
        let response: HTTPClient.Response
        do { response = try send("HEAD", key: key, deadline: Self.headDeadline) } catch StoreError.io(_, _, ENOENT) { return nil }
        guard let bytes = response.headers.first(name: "content-length").flatMap(Int.init),
              let modified = response.headers.first(name: "last-modified").flatMap(S3Dates.httpDate) else {
            throw StoreError.io(path: location.url(ofKey: key), operation: "HEAD (no Content-Length or Last-Modified in the answer)", errno: EIO)
        }
        let seconds = modified.timeIntervalSince1970
        return BlobAttributes(bytes: bytes, modified: seconds, age: Self.serverTime(of: response) - seconds, resolution: 1)
    }

    /// When the server answered, by its own clock (`Date`), so that an object's age is taken
    /// on the clock that stamped its Last-Modified; this node's clock only when the server sent
    /// no Date (every S3 implementation does).
    static func serverTime(of response: HTTPClient.Response) -> Double {
        response.headers.first(name: "date").flatMap(S3Dates.httpDate)?.timeIntervalSince1970 ?? Date().timeIntervalSince1970
    }

    /// Deletes object `key`; deleting a missing object succeeds, as in S3.
    public func delete(_ key: String) throws {
        _ = try send("DELETE", key: key)
    }

    /// Every object whose key starts with `prefix`, a page of up to 1,000 at a time.
    public func list(prefix: String) throws -> [S3Listing.Object] {
        var objects: [S3Listing.Object] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix)]
            if let token { query.append(("continuation-token", token)) }
            let response = try send("GET", key: nil, query: query)
            var page = try S3Listing(xml: response.body.map { String(buffer: $0) } ?? "", url: location.url(ofKey: prefix))
            page.answered(at: Self.serverTime(of: response))
            objects += page.objects
            token = page.nextToken
        } while token != nil
        return objects
    }

    /// Signs and sends one request and waits for its answer; a status outside 2xx throws.
    func send(_ method: String, key: String?, query: [(String, String)] = [], headers: [String: String] = [:],
              payloadHash: String = SigV4.sha256Hex(""), body: HTTPClient.Body? = nil,
              deadline: TimeAmount = Self.deadline) throws -> HTTPClient.Response {
        let request = try self.request(method, key: key, query: query, headers: headers, payloadHash: payloadHash, body: body)
        let url = location.url(ofKey: key ?? "")
        let response: HTTPClient.Response
        do { response = try http.execute(request: request, deadline: .now() + deadline).wait() } catch {
            throw Self.unreachable(url, method, error)
        }
        guard (200..<300).contains(response.status.code) else {
            throw Self.refused(url, method, status: Int(response.status.code), body: response.body.map { String(buffer: $0) } ?? "")
        }
        return response
    }

    func request(_ method: String, key: String?, query: [(String, String)] = [], headers extra: [String: String] = [:],
                 payloadHash: String = SigV4.sha256Hex(""), body: HTTPClient.Body? = nil) throws -> HTTPClient.Request {
        let path = "/" + SigV4.encode(location.bucket) + (key.map { "/" + SigV4.encode($0, keepSlash: true) } ?? "")
        var headers = extra
        headers["host"] = location.hostHeader
        headers["x-amz-date"] = SigV4.amzDate(Date())
        headers["x-amz-content-sha256"] = payloadHash
        if let token = location.sessionToken { headers["x-amz-security-token"] = token }
        headers["authorization"] = signer.authorization(method: method, path: path, query: query, headers: headers, payloadHash: payloadHash)
        let queryText = query.map { "\(SigV4.encode($0.0))=\(SigV4.encode($0.1))" }.joined(separator: "&")
        let url = location.endpoint.absoluteString + path + (queryText.isEmpty ? "" : "?" + queryText)
        return try HTTPClient.Request(url: url, method: HTTPMethod(rawValue: method), headers: HTTPHeaders(Array(headers)), body: body)
    }

    static func unreachable(_ url: String, _ method: String, _ error: Error) -> StoreError {
        if let error = error as? StoreError { return error }
        return StoreError.io(path: url, operation: "\(method) (the S3 server did not answer: \(error))", errno: EAGAIN)
    }

    static func refused(_ url: String, _ method: String, status: Int, body: String) -> StoreError {
        let name = S3Listing.firstValue(of: "Code", in: body)
        let code = name.map { " \($0)" } ?? ""
        if status == 404, name == "NoSuchBucket" {
            let bucket = url.dropFirst("s3://".count).split(separator: "/").first.map(String.init) ?? url
            return StoreError.io(path: url, operation: "\(method) (HTTP 404 NoSuchBucket: bucket \(bucket) does not exist on this S3 server; "
                                 + "check the store's bucket and endpoint)", errno: EAGAIN)
        }
        if status == 403 {
            return StoreError.io(path: url, operation: "\(method) (HTTP 403\(code): the S3 server refused this node's request; check its "
                                 + "credentials, their permissions and its clock)", errno: EAGAIN)
        }
        let errno: Int32 = switch status {
        case 404: ENOENT
        case 429, 500...: EAGAIN
        default: EIO
        }
        return StoreError.io(path: url, operation: "\(method) (HTTP \(status)\(code))", errno: errno)
    }
}

/// One client for the process, never shut down. A refused connection fails its request at
/// once (exit 4, the caller retries) rather than being retried until the deadline.
private let s3HTTPClient: HTTPClient = {
    var configuration = HTTPClient.Configuration()
    configuration.connectionPool.retryConnectionEstablishment = false
    configuration.timeout = .init(connect: .seconds(10), read: .seconds(120))
    return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
}()
