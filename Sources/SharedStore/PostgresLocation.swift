import Foundation

/// A PostgreSQL index: `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|require]`
/// (docs/DESIGN.md, "Store URL and config"). A password may also come from `$PGPASSWORD`.
public struct PostgresLocation: Sendable, Equatable {
    public var user: String
    public var password: String?
    public var host: String
    public var port: Int
    public var database: String
    /// `require`: TLS, the server's certificate checked against the system's roots.
    public var requireTLS: Bool

    public init(url: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        func bad(_ problem: String) -> StoreSpecError { .badURL(Self.redact(url), problem: problem) }
        guard let parts = URLComponents(string: url), ["postgresql", "postgres"].contains(parts.scheme ?? "") else {
            throw bad("expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
        }
        guard let user = parts.user, !user.isEmpty else { throw bad("no user (postgresql://USER@HOST/DATABASE)") }
        guard let host = parts.host, !host.isEmpty else { throw bad("no host") }
        let database = String(parts.path.dropFirst())
        guard !database.isEmpty, !database.contains("/") else { throw bad("no database name after the host (…/DATABASE)") }
        var requireTLS = false
        for item in parts.queryItems ?? [] {
            switch (item.name, item.value ?? "") {
            case ("sslmode", "disable"): requireTLS = false
            case ("sslmode", "require"), ("sslmode", "verify-full"): requireTLS = true
            case ("sslmode", let other): throw bad("sslmode=\(other): expected disable, require or verify-full")
            default: throw bad("unknown parameter \"\(item.name)\" (only sslmode is understood)")
            }
        }
        self.user = user.removingPercentEncoding ?? user
        password = parts.password.map { $0.removingPercentEncoding ?? $0 } ?? environment["PGPASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
        self.host = host
        port = parts.port ?? 5432
        guard (1...65535).contains(port) else { throw bad("port \(port) is not 1-65535") }
        self.database = database.removingPercentEncoding ?? database
        self.requireTLS = requireTLS
    }

    /// The URL without its password, for messages and logs.
    public var redacted: String { "postgresql://\(user)@\(host):\(port)/\(database)" }

    static func redact(_ url: String) -> String {
        guard var parts = URLComponents(string: url), parts.password != nil else { return url }
        parts.password = "***"
        return parts.string ?? url
    }
}
