import Hummingbird
import NIOCore

/// A request's context in `kvstore serve`: Hummingbird's basic one, plus the client's address
/// for the access log.
struct ServeRequestContext: RequestContext, RemoteAddressRequestContext {
    var coreContext: CoreRequestContextStorage
    let remoteAddress: SocketAddress?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    /// `ADDRESS:PORT` (`[ADDRESS]:PORT` for IPv6), or `-` when unknown.
    var client: String {
        guard let a = remoteAddress, let ip = a.ipAddress else { return "-" }
        return ip.contains(":") ? "[\(ip)]:\(a.port ?? 0)" : "\(ip):\(a.port ?? 0)"
    }
}
