import Foundation
import Hummingbird
import HummingbirdCore
import Logging

/// One line per request (`--no-access-log` turns it off):
///
///     access 127.0.0.1:51234 GET /v1/entries?limit=5 200 812 B 3.4 ms
///
/// The client's address, the method, the path with only known query parameters' values (any
/// other value is written `…`, in case it is a secret), the status, the body bytes sent and
/// the time from the request to its last byte. A body cut short says so. Tokens travel in
/// headers, which are never logged.
struct AccessLog: Sendable {
    let logger: Logger

    /// Query parameters whose values are logged.
    static let plainParameters: Set<String> = [
        "q", "limit", "after", "model", "key", "source", "policy", "dtype", "expand", "prefix", "segment", "pinned", "sort", "order", "page"]

    /// The request target as logged.
    static func target(_ uri: URI) -> String {
        guard let query = uri.query, !query.isEmpty else { return uri.path }
        let parts = query.split(separator: "&").map { pair -> String in
            let name = pair.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
            return plainParameters.contains(name) ? String(pair) : "\(name)=…"
        }
        return uri.path + "?" + parts.joined(separator: "&")
    }

    func write(client: String, method: HTTPRequest.Method, target: String, status: Int, bytes: Int,
               since started: ContinuousClock.Instant, cutShort: Bool = false) {
        let d = ContinuousClock.now - started
        let ms = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        logger.info("access \(client) \(method.rawValue) \(target) \(status) \(bytes) B \(String(format: "%.1f", ms)) ms\(cutShort ? " (cut short)" : "")")
    }

    /// `response` with its body counted as it is written and the line written after its
    /// last byte (or when it stops short).
    func logging(_ response: Response, client: String, method: HTTPRequest.Method, target: String,
                 started: ContinuousClock.Instant) -> Response {
        var response = response
        let body = response.body
        let status = response.status.code
        let sent = SentBytes()
        let counted = body.map { buffer in sent.add(buffer.readableBytes); return buffer }
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            do {
                try await counted.write(writer)
            } catch {
                self.write(client: client, method: method, target: target, status: status, bytes: sent.total, since: started, cutShort: true)
                throw error
            }
            self.write(client: client, method: method, target: target, status: status, bytes: sent.total, since: started)
        }
        return response
    }
}

/// Bytes written so far, shared between the writer and the line that reports them.
private final class SentBytes: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add(_ n: Int) { lock.lock(); count += n; lock.unlock() }
    var total: Int { lock.lock(); defer { lock.unlock() }; return count }
}
