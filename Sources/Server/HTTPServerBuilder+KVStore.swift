import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1

extension HTTPServerBuilder {
    /// HTTP/1.1 for `kvstore serve`: connections are counted and timed (`ConnectionTable`,
    /// `ConnectionWatch`), and `Expect: 100-continue` is answered with `100 Continue` when
    /// `accepts` says the body will be read, so a client such as `curl -T` sends an upload at
    /// once instead of waiting a second for permission. When it will not be read (wrong route,
    /// no token, too large), the final answer comes first and the client never sends the body.
    static func kvstore(continuing accepts: @escaping @Sendable (Request) -> Bool, limits: ConnectionLimits,
                        table: ConnectionTable) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            WatchedHTTP1Channel(inner: HTTP1Channel(responder: { request, writer, channel in
                if request.headers[.expect]?.lowercased() == "100-continue", accepts(request) {
                    try await writer.writeInformationalHead(HTTPResponse(status: .continue))
                }
                try await responder(request, writer, channel)
            }), limits: limits, table: table)
        }
    }
}

/// Hummingbird's HTTP/1 channel with a `ConnectionWatch` in its pipeline, admitted through the
/// `ConnectionTable` (a refused connection is answered 503 and closed at once).
struct WatchedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let inner: HTTP1Channel
    let limits: ConnectionLimits
    let table: ConnectionTable

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let admission = table.admit(channel)
        return inner.setup(channel: channel, logger: logger).flatMapThrowing { [limits, table] value in
            let pipeline = channel.pipeline.syncOperations
            let watch = ConnectionWatch(limits: limits, channel: channel, table: table)
            let raw = ConnectionWatch.RawBytes(watch)
            try pipeline.addHandler(raw, position: .first)
            let decoder = try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try pipeline.addHandler(ConnectionWatch.RequestPhases(watch), position: .after(decoder))
            if admission == .refused {
                logger.warning("refused a connection: all \(table.limit) connections are busy with requests (--max-connections)")
                raw.refuse()
            } else {
                watch.start()
            }
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}
