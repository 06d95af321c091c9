import Foundation
import Hummingbird
import Logging
import Pipeline
import Store

/// Query parameters, the first of each name.
typealias Query = [String: String]

/// Answers every request of `kvstore serve`: parses the route, checks the token, runs the
/// handler, turns errors into `{"error", "code"}`, counts the request in the metrics and
/// writes its access log line.
struct StoreResponder: HTTPResponder {
    typealias Context = ServeRequestContext

    let configuration: ServerConfiguration
    let pool: StorePool
    let metrics: ServerMetrics
    let logger: Logger
    let policies: PolicyFile?
    /// nil with `--no-access-log`.
    let accessLog: AccessLog?
    /// Blobs proven to be what their rows name, for ranged reads and layouts.
    let proofs = ContentProofs()

    func respond(to request: Request, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        var label = "unmatched", streams = false, entry: String?
        var response: Response
        do {
            guard let route = try Route(path: request.uri.path) else {
                throw APIError.notFound("no such resource: \(request.uri.path.prefix(200))")
            }
            label = route.template
            streams = route.streams
            entry = route.entryID
            // HEAD is GET without the body: same status and headers, nothing decoded or sent.
            let method = request.method == .head ? HTTPRequest.Method.get : request.method
            guard route.methods.contains(method) else {
                throw APIError(status: .methodNotAllowed, code: "method_not_allowed",
                               message: "\(request.method) is not allowed on \(route.template)",
                               headers: [.allow: (route.methods + (route.methods.contains(.get) ? [.head] : [])).map(\.rawValue).joined(separator: ", ")])
            }
            try authorize(request, route: route)
            response = try await handle(route, request, started: started, context: context)
            if request.method == .head {
                let length = response.body.contentLength
                response.body = ResponseBody()
                if let length { response.headers[.contentLength] = String(length) }
            }
        } catch {
            let e = APIError.from(error, entry: entry)
            // 501 answers a client's Transfer-Encoding the server does not speak: not the server's failure.
            if e.status.code >= 500 && e.status != .notImplemented {
                logger.error("\(request.method) \(label) \(e.status.code): \(error)")
            }
            response = Self.error(e)
            // A body the handler did not read is not read either: close rather than drain it.
            if request.method == .put || request.method == .post { response.headers[.connection] = "close" }
        }
        response.headers[.xContentTypeOptions] = "nosniff"
        metrics.request(route: label, method: request.method.rawValue, status: response.status.code)
        // Streams count their bytes as they go; the rest are counted whole here.
        let streaming = streams && (response.status == .ok || response.status == .partialContent) && request.method != .head
        if !streaming {
            metrics.bytesOut(route: label, response.body.contentLength ?? 0)
            metrics.answered(route: label, ContinuousClock.now - started)
        }
        guard let accessLog else { return response }
        let target = AccessLog.target(request.uri)
        if streaming {
            return accessLog.logging(response, client: context.client, method: request.method, target: target, started: started)
        }
        accessLog.write(client: context.client, method: request.method, target: target, status: response.status.code,
                        bytes: request.method == .head ? 0 : response.body.contentLength ?? 0, since: started)
        return response
    }

    func handle(_ route: Route, _ request: Request, started: ContinuousClock.Instant, context: Context) async throws -> Response {
        var query: Query = [:]
        for (k, v) in request.uri.queryParameters {
            let name = String(k)
            // A typo'd or repeated parameter must not quietly serve something else (the pages,
            // for people, take the first of each and ignore the rest).
            if !route.isPage {
                guard query[name] == nil else { throw APIError.badRequest("parameter \(name.prefix(40)) is given twice: give it once") }
                if let known = route.parameters, !known.contains(name) {
                    throw APIError.badRequest("parameter \(name.prefix(40)) is not one of \(route.template)'s: \(known.joined(separator: ", "))")
                }
            }
            if query[name] == nil { query[name] = String(v) }
        }
        switch route {
        case .list: return try await list(query)
        case .entry(let id):
            return request.method == .delete ? try await remove(id) : try await show { try $0.index.resolve(id) }
        case .key(let key): return try await show { try $0.index.resolve(key, key: true) }
        case .pin(let id): return try await pin(id, query)
        case .kvsnap(let id): return try await kvsnap(id, query, request, started: started)
        case .pack(let id): return try await pack(id, request, started: started, segment: try Self.segmentFlag(query))
        case .layout(let id): return try await layout(id, request, segment: try Self.segmentFlag(query))
        case .upload: return try await upload(request, query)
        case .match: return try await match(request)
        case .health: return try await health()
        case .metrics: return try await metricsPage()
        case .openapi: return Self.openapi()
        case .overview: return try await overviewPage(query, canWrite: canWrite(request))
        case .entryPage(let id): return try await entryPage(id, canWrite: canWrite(request))
        case .pinForm(let id): return try await pinForm(id, request)
        case .removeForm(let id): return try await removeForm(id, request)
        }
    }

    /// Checks the token against the route's scope (401 without a known token, 403 with too
    /// small a scope). Tokens are never logged, nor echoed in an error.
    ///
    /// The API takes `Authorization: Bearer TOKEN`; the web pages also take HTTP Basic with
    /// the token as password, which a browser asks for by itself (no script needed).
    func authorize(_ request: Request, route: Route) throws {
        guard let tokens = configuration.tokens else {
            // No tokens: loopback only, and only under a loopback name. A web page whose own
            // name was rebound to 127.0.0.1 (DNS rebinding) sends its own Host, and is refused.
            guard Self.isLoopbackHost(request.head.authority) else {
                throw APIError(status: .misdirectedRequest, code: "misdirected",
                               message: "this server has no tokens and answers only requests addressed to localhost, 127.0.0.1 or [::1]")
            }
            return
        }
        guard let needed = route.scope(for: request.method) else { return }
        let challenge: HTTPFields = route.isPage ? [.wwwAuthenticate: "Basic realm=\"kvstore\", charset=\"UTF-8\""]
                                                 : [.wwwAuthenticate: "Bearer realm=\"kvstore\""]
        guard let token = Self.presentedToken(request.headers[.authorization]) else {
            throw APIError(status: .unauthorized, code: "unauthorized",
                           message: "this server needs a token: Authorization: Bearer TOKEN", headers: challenge)
        }
        guard let scope = tokens.scope(of: token) else {
            throw APIError(status: .unauthorized, code: "unauthorized", message: "the token is not known to this server", headers: challenge)
        }
        guard scope >= needed else {
            throw APIError(status: .forbidden, code: "forbidden",
                           message: "\(request.method) \(route.template) needs a \(needed.rawValue) token; this one may only \(scope.rawValue)")
        }
    }

    /// Whether the request may write: the server has no tokens (it then serves loopback only),
    /// or the request presents a write token. The pages show their buttons only then.
    func canWrite(_ request: Request) -> Bool {
        guard let tokens = configuration.tokens else { return true }
        return Self.presentedToken(request.headers[.authorization]).flatMap { tokens.scope(of: $0) } == .write
    }

    /// Whether a request's Host (authority) names this machine's loopback: `localhost`,
    /// `127.x.x.x` or `[::1]`, with or without a port.
    static func isLoopbackHost(_ authority: String?) -> Bool {
        guard var host = authority, !host.isEmpty else { return false }
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return false }
            host = String(host[host.index(after: host.startIndex)..<close])
        } else if let colon = host.lastIndex(of: ":") {
            host = String(host[..<colon])
        }
        return ListenAddress.isLoopbackName(host)
    }

    /// The token of `Bearer TOKEN`, or the password of `Basic base64(USER:TOKEN)` (the scheme
    /// in any case, as RFC 9110 has it).
    static func presentedToken(_ header: String?) -> Substring? {
        guard let header else { return nil }
        let scheme = header.prefix { $0 != " " }.lowercased()
        if scheme == "bearer" { return header.dropFirst(7).drop(while: { $0 == " " }) }
        if scheme == "basic", let data = Data(base64Encoded: String(header.dropFirst(6).trimmingCharacters(in: .whitespaces))),
           let pair = String(data: data, encoding: .utf8), let colon = pair.firstIndex(of: ":") {
            return pair[pair.index(after: colon)...]
        }
        return nil
    }

    // MARK: - Responses

    static let jsonEncoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: try jsonEncoder.encode(value) + [0x0A])))
    }

    static func error(_ e: APIError) -> Response {
        struct Body: Encodable { var error: String; var code: String }
        var fields = e.headers
        fields[.contentType] = "application/json"
        let bytes = (try? jsonEncoder.encode(Body(error: e.message, code: e.code))) ?? Data("{\"error\":\"internal\",\"code\":\"internal\"}".utf8)
        return Response(status: e.status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: bytes + [0x0A])))
    }
}
