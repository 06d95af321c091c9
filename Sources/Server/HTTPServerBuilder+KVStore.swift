import Hummingbird
import HummingbirdCore

extension HTTPServerBuilder {
    /// HTTP/1.1 that answers `Expect: 100-continue` with `100 Continue` when `accepts` says the
    /// body will be read, so a client such as `curl -T` sends an upload at once instead of
    /// waiting a second for permission. When it will not be read (wrong route, no token, too
    /// large), the final answer comes first and the client never sends the body.
    static func http1(continuing accepts: @escaping @Sendable (Request) -> Bool) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            HTTP1Channel(responder: { request, writer, channel in
                if request.headers[.expect]?.lowercased() == "100-continue", accepts(request) {
                    try await writer.writeInformationalHead(HTTPResponse(status: .continue))
                }
                try await responder(request, writer, channel)
            })
        }
    }
}
