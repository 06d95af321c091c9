/// How long `kvstore serve` waits for a client, and how many connections it keeps at once
/// (docs/DESIGN.md, "The HTTP service", Connections).
///
///     var limits = ConnectionLimits()
///     limits.headerTimeout = .seconds(5)
public struct ConnectionLimits: Sendable, Equatable {
    /// A connection between requests (or new, with nothing sent yet) is closed after this.
    public var idleTimeout: Duration = .seconds(30)
    /// A request head that has begun to arrive must be complete within this.
    public var headerTimeout: Duration = .seconds(10)
    /// A request body that stops arriving for this long ends the connection (a read timeout,
    /// not a limit on the whole upload).
    public var bodyTimeout: Duration = .seconds(30)
    /// Connections held at once; nil: as many as the descriptor limit allows, at most
    /// `defaultMaxConnections`.
    public var maxConnections: Int?

    public static let defaultMaxConnections = 1000

    public init() {}
}
