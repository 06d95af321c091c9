import NIOCore
import NIOHTTP1

/// One connection's deadlines (`ConnectionLimits`): between requests the idle timeout runs;
/// once a request's first byte arrives, its head must be complete within the header timeout;
/// while its body arrives, each gap must be shorter than the body timeout; while a response
/// is written, a stream waits on its client by back-pressure, but a client that reads nothing
/// for the body timeout (the socket stays full: the channel unwritable) is closed, or a few
/// readers that stopped would hold every connection, and a stop, for ever. A missed deadline
/// closes the connection.
///
/// Lives on the connection's event loop: `RawBytes` (first in the pipeline) reports bytes as
/// they arrive, `RequestPhases` (after the HTTP decoder) reports heads, ends and responses.
final class ConnectionWatch {
    private let limits: ConnectionLimits
    private let channel: any Channel
    private let table: ConnectionTable
    /// When the head now arriving began, if one is.
    private var headStarted: NIODeadline?
    /// When the body now arriving last grew, if one is.
    private var bodyGrew: NIODeadline?
    /// Requests whose head arrived and whose response has not ended.
    private var inProgress = 0
    private var idleSince = NIODeadline.now()
    /// Since when the socket has been full (the client not reading), if it is.
    private var unwritableSince: NIODeadline?
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?

    init(limits: ConnectionLimits, channel: any Channel, table: ConnectionTable) {
        self.limits = limits; self.channel = channel; self.table = table
    }

    func start() { rearm() }

    func bytesArrived() {
        if bodyGrew != nil {
            bodyGrew = .now()
        } else if headStarted == nil {
            headStarted = .now()
            rearm()
        }
    }

    func headArrived() {
        headStarted = nil
        bodyGrew = .now()
        inProgress += 1
        if inProgress == 1 { table.mark(channel, busy: true) }
        rearm()
    }

    func requestEnded() {
        bodyGrew = nil
    }

    /// The socket filled up (the client stopped reading) or drained again.
    func writability(_ writable: Bool) {
        if writable { unwritableSince = nil } else if unwritableSince == nil { unwritableSince = .now() }
        rearm()
    }

    /// Whether a request is being read or answered: an unreadable head arriving now is the
    /// connection's next request, with nothing of the response stream to interleave with.
    var isBetweenRequests: Bool { inProgress == 0 }

    func responseEnded() {
        inProgress = max(0, inProgress - 1)
        if inProgress == 0 {
            bodyGrew = nil
            idleSince = .now()
            table.mark(channel, busy: false)
        }
        rearm()
    }

    func stop() {
        timer?.cancel()
        timer = nil
    }

    /// The deadline now in force, if any.
    private var deadline: NIODeadline? {
        if let unwritableSince { return unwritableSince + .nanoseconds(limits.bodyTimeout.nanoseconds) }
        if let headStarted { return headStarted + .nanoseconds(limits.headerTimeout.nanoseconds) }
        if let bodyGrew { return bodyGrew + .nanoseconds(limits.bodyTimeout.nanoseconds) }
        if inProgress > 0 { return nil }
        return idleSince + .nanoseconds(limits.idleTimeout.nanoseconds)
    }

    /// Makes sure a timer fires no later than the deadline; a timer that fires early (the
    /// deadline moved on since) looks again and sets the next one.
    private func rearm() {
        guard let deadline else { return }
        if let timerDeadline, timerDeadline <= deadline { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = channel.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in fire() }
    }

    private func fire() {
        timer = nil
        timerDeadline = nil
        guard let deadline else { return }
        if deadline <= .now() { channel.close(promise: nil) } else { rearm() }
    }

    /// First in the pipeline: sees every byte a client sends.
    final class RawBytes: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        let watch: ConnectionWatch
        private var context: ChannelHandlerContext?
        init(_ watch: ConnectionWatch) { self.watch = watch }

        func handlerAdded(context: ChannelHandlerContext) { self.context = context }
        func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

        /// Answers 503 straight to the socket (past the HTTP encoder) and closes.
        func refuse() {
            guard let context else { return }
            let body = #"{"code":"busy","error":"the server is at its connection limit and every connection is busy: retry shortly"}"# + "\n"
            let head = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
                + "Retry-After: 1\r\nConnection: close\r\n\r\n"
            context.writeAndFlush(NIOAny(ByteBuffer(string: head + body)), promise: nil)
            context.close(promise: nil)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            watch.bytesArrived()
            context.fireChannelRead(data)
        }

        func channelInactive(context: ChannelHandlerContext) {
            watch.stop()
            context.fireChannelInactive()
        }

        func channelWritabilityChanged(context: ChannelHandlerContext) {
            watch.writability(context.channel.isWritable)
            context.fireChannelWritabilityChanged()
        }
    }

    /// After the HTTP/1 decoder: sees each request's head and end, and each response's end;
    /// closes the connection once a response that says `Connection: close` is written (an
    /// error answered before its request's body was read: the body is not read either, where
    /// the server would otherwise read and discard all of it).
    final class RequestPhases: ChannelDuplexHandler, RemovableChannelHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundIn = HTTPServerResponsePart
        typealias OutboundOut = HTTPServerResponsePart
        let watch: ConnectionWatch
        private var closesAfterResponse = false
        private var refused = false
        init(_ watch: ConnectionWatch) { self.watch = watch }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head: watch.headArrived()
            case .body: break
            case .end: watch.requestEnded()
            }
            context.fireChannelRead(data)
        }

        /// A head the decoder cannot parse, between requests: answered here with a JSON 400
        /// (`HeadRefusal`) and closed; the channel then sees the connection end, not the error.
        /// An error inside a request (a bad chunk of a body) goes on to the request's handler.
        func errorCaught(context: ChannelHandlerContext, error: Error) {
            guard let parse = error as? HTTPParserError, watch.isBetweenRequests, !refused else {
                context.fireErrorCaught(error)
                return
            }
            refused = true
            let (head, body) = HeadRefusal.response(parse)
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.whenComplete { _ in context.close(promise: nil) }
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            switch unwrapOutboundIn(data) {
            case .head(let head):
                if head.headers["connection"].contains(where: { $0.lowercased() == "close" }) { closesAfterResponse = true }
            case .body:
                break
            case .end:
                watch.responseEnded()
                if closesAfterResponse {
                    closesAfterResponse = false
                    let written = promise ?? context.eventLoop.makePromise()
                    written.futureResult.whenComplete { _ in context.close(promise: nil) }
                    context.write(data, promise: written)
                    return
                }
            }
            context.write(data, promise: promise)
        }
    }
}

extension Duration {
    /// The whole duration in nanoseconds.
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
