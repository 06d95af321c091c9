import Foundation
import Hummingbird
import LightKV
import Pipeline
import Store

/// `PUT /v1/snapshots`: the body goes to a temporary file inside the store, then through the
/// same `Ingestor` as `kvstore ingest`; the file is removed whatever happens.
extension StoreResponder {
    struct Ingested: Encodable {
        var id: String; var already_stored: Bool; var bytes_in: Int; var bytes_out: Int; var policy: String; var milliseconds: Double
        /// The policy the entry was stored under, when it was already stored under another
        /// than the one asked for (the upload does not re-pack it); absent otherwise.
        var stored_policy: String?
    }

    func upload(_ request: Request, _ query: Query) async throws -> Response {
        let policy = try resolvePolicy(query["policy"] ?? "none")
        let limit = configuration.maxUpload
        try Self.checkFraming(request.headers)
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit { throw Self.tooLarge(limit) }

        let temp = UploadFile(directory: pool.tempDirectory)
        defer { temp.remove() }
        let received = try await temp.receive(request.body, limit: limit)

        let started = ContinuousClock.now
        let outcome = try await pool.run(long: true) { root in
            do {
                return try Ingestor(root: root).ingest(path: temp.path, policy: policy)
            } catch StoreError.invalidSnapshot(_, let e) {
                throw StoreError.invalidSnapshot(path: "upload of \(received) bytes", e)
            }
        }
        metrics.ingested(ContinuousClock.now - started, policy: outcome.record.policy)
        let r = outcome.record
        let storedPolicy = outcome.alreadyStored && r.policy != policy.name ? r.policy : nil
        logger.info("stored \(r.id)\(outcome.alreadyStored ? " (already stored)" : ""): \(r.bytesIn) -> \(r.bytesOut) bytes, \(r.policy), \(Int(outcome.milliseconds)) ms")
        return try Self.json(Ingested(id: r.id, already_stored: outcome.alreadyStored, bytes_in: r.bytesIn, bytes_out: r.bytesOut,
                                      policy: r.policy, milliseconds: (outcome.milliseconds * 10).rounded() / 10,
                                      stored_policy: storedPolicy),
                             status: outcome.alreadyStored ? .ok : .created, headers: [.location: "/v1/entries/\(r.id)"])
    }

    /// Whether an upload's body would be read: the route, the token and the declared length
    /// pass (for `Expect: 100-continue`).
    func acceptsBody(_ request: Request) -> Bool {
        guard request.method == .put, let route = try? Route(path: request.uri.path), route == .upload,
              (try? authorize(request, route: route)) != nil, (try? Self.checkFraming(request.headers)) != nil else { return false }
        let length = request.headers[.contentLength].flatMap { Int($0) } ?? 0
        return length <= configuration.maxUpload
    }

    /// An upload says how long it is: `Content-Length`, or `Transfer-Encoding: chunked` alone
    /// (a body without either would read as empty; a compressed one is not decoded here).
    static func checkFraming(_ headers: HTTPFields) throws {
        if let coding = headers[.transferEncoding] {
            guard coding.trimmingCharacters(in: .whitespaces).lowercased() == "chunked" else {
                throw APIError(status: .notImplemented, code: "not_implemented",
                               message: "Transfer-Encoding \"\(coding.prefix(80))\" is not supported: send the kvsnap file as it is, with Content-Length or chunked")
            }
        } else if headers[.contentLength] == nil {
            throw APIError(status: .lengthRequired, code: "length_required",
                           message: "an upload needs Content-Length (or Transfer-Encoding: chunked)")
        }
    }

    func resolvePolicy(_ text: String) throws -> Policy {
        do { return try Policy.resolve(text, in: policies) } catch { throw StoreError.badPolicy(error) }
    }

    static func tooLarge(_ limit: Int) -> APIError {
        APIError(status: .contentTooLarge, code: "too_large", message: "the upload is larger than this server's --max-upload (\(limit) bytes)")
    }
}

/// An upload on its way to disk, under the store's tmp/ (which compaction sweeps if the
/// server dies before removing it).
final class UploadFile: @unchecked Sendable {
    let path: String
    private var fd: Int32 = -1

    init(directory: String) {
        path = "\(directory)/upload-\(UUID().uuidString.lowercased()).safetensors.tmp"
    }

    /// Writes `body` to the file, refusing more than `limit` bytes; returns the bytes received.
    func receive(_ body: RequestBody, limit: Int) async throws -> Int {
        try create()
        var received = 0
        for try await buffer in body {
            received += buffer.readableBytes
            if received > limit { throw StoreResponder.tooLarge(limit) }
            try append(buffer)
        }
        try close()
        return received
    }

    func create() throws {
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError.io(path: path, operation: "create", errno: errno) }
    }

    func append(_ buffer: ByteBuffer) throws {
        try buffer.withUnsafeReadableBytes { bytes in
            var done = 0
            while done < bytes.count {
                let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw StoreError.io(path: path, operation: "write", errno: errno) }
                done += n
            }
        }
    }

    func close() throws {
        guard fd >= 0 else { return }
        defer { fd = -1 }
        guard Glibc.close(fd) == 0 else { throw StoreError.io(path: path, operation: "close", errno: errno) }
    }

    func remove() {
        try? close()
        unlink(path)
    }
}
