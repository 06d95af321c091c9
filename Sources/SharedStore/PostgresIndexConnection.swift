import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import Store

/// The index in PostgreSQL, shared by every host of a fleet (docs/DESIGN.md, "Semantics
/// across hosts"), as blocking calls for the store's synchronous callers.
///
/// Statements use `?` placeholders, as for SQLite; they are numbered (`$1`, …) here. A
/// connection the server dropped is opened again by the next statement outside a
/// transaction; the statement that saw it fail throws a transient error (exit 4, retried).
public final class PostgresIndexConnection: IndexConnection, @unchecked Sendable {
    public let target: PostgresLocation
    private var connection: PostgresConnection?
    private var inTransaction = false
    private var holdsCompactionLock = false
    public private(set) var changes = 0

    public var dialect: SQLDialect { .postgres }
    public var location: String { target.redacted }

    /// A statement that has not finished by then fails as transient.
    static let deadline: TimeAmount = .seconds(60)
    /// The session lock that admits one compactor per store: advisory locks keyed by two
    /// 32-bit numbers never collide with the 64-bit keys of `transactionLock`.
    static let compactionKey = (Int32(0x6B76), Int32(1))

    public init(location: PostgresLocation) throws {
        target = location
        _ = try live()
    }

    deinit { try? connection?.close().wait() }

    /// Runs each `;`-separated statement in turn (a migration holds several; a prepared
    /// statement takes one).
    public func execute(_ sql: String) throws {
        for statement in Self.statements(sql) { try query(statement, []) }
    }

    @discardableResult
    public func query(_ sql: String, _ values: [SQLValue]) throws -> [Row] {
        var bindings = PostgresBindings(capacity: values.count)
        for value in values {
            switch value {
            case .null: bindings.appendNull()
            case .int(let n): bindings.append(n)
            case .double(let d): bindings.append(d)
            case .text(let s): bindings.append(s)
            }
        }
        let statement = PostgresQuery(unsafeSQL: Self.numberPlaceholders(sql), binds: bindings)
        let result = try run(sql) { connection in
            connection.query(statement, logger: Self.logger).map { Optional($0) }
        }
        changes = result?.metadata.rows ?? 0
        return result?.rows.map(Self.row) ?? []
    }

    public func transaction<T>(_ body: () throws -> T) throws -> T {
        // Connected first; from BEGIN to COMMIT a lost connection fails the transaction
        // instead of opening a new one (where COMMIT would only warn: no transaction).
        _ = try live()
        inTransaction = true
        defer { inTransaction = false }
        return try runTransaction(begin: "BEGIN", body)
    }

    public func transactionLock(_ name: String) throws {
        try query("SELECT pg_advisory_xact_lock(?)", [.int(Self.lockKey(name))])
    }

    public func tryCompactionLock() throws -> Bool {
        if holdsCompactionLock { return true }
        let key = Self.compactionKey
        let rows = try query("SELECT pg_try_advisory_lock(\(key.0), \(key.1)) AS locked", [])
        holdsCompactionLock = rows.first?.int("locked") == 1
        return holdsCompactionLock
    }

    /// The open connection, opened (again) when there is none; a session that held the
    /// compaction lock takes it again or fails, so a compactor never runs unlocked.
    private func live() throws -> PostgresConnection {
        if let connection, !connection.isClosed { return connection }
        if inTransaction { throw transient("the connection closed inside a transaction") }
        connection = nil
        let tls: PostgresConnection.Configuration.TLS
        if target.requireTLS {
            do { tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration())) } catch {
                throw StoreError.database("\(location): TLS setup failed: \(error)")
            }
        } else {
            tls = .disable
        }
        var configuration = PostgresConnection.Configuration(host: target.host, port: target.port, username: target.user,
                                                             password: target.password, database: target.database, tls: tls)
        configuration.options.connectTimeout = .seconds(10)
        let opened: PostgresConnection
        do {
            opened = try PostgresConnection.connect(on: MultiThreadedEventLoopGroup.singleton.any(), configuration: configuration,
                                                    id: 1, logger: Self.logger).wait()
        } catch {
            throw failure(error, "connect")
        }
        connection = opened
        if holdsCompactionLock {
            holdsCompactionLock = false
            guard try tryCompactionLock() else { throw transient("the compaction lock was lost with the connection and another compactor holds it") }
        }
        return opened
    }

    /// Sends one request and waits for its answer, mapping failures to `StoreError`.
    private func run(_ sql: String, _ send: (PostgresConnection) -> EventLoopFuture<PostgresQueryResult?>) throws -> PostgresQueryResult? {
        let connection = try live()
        do {
            return try send(connection).wait()
        } catch {
            let mapped = failure(error, String(sql.prefix(80)))
            if connection.isClosed || mapped.isTransient { try? connection.close().wait() }
            throw mapped
        }
    }

    /// Connection trouble, a server shutting down, serialization failures and exhausted
    /// resources are transient, and so are a role or database the server does not know or
    /// whose credentials it refuses (the store's settings, not any input, are at fault: the
    /// daemon keeps its inputs and retries); anything else the server refused is
    /// `StoreError.database`.
    private func failure(_ error: Error, _ what: String) -> StoreError {
        guard let error = error as? PSQLError else { return transient("\(what): \(error)") }
        if error.code == .server, let state = error.serverInfo?[.sqlState] {
            let message = error.serverInfo?[.message] ?? "error"
            // 08 connection, 40 rollback (serialization, deadlock), 53 resources, 57 shutdown;
            // 28 authorization, 3D an unknown database.
            if ["08", "40", "53", "57"].contains(String(state.prefix(2))) { return transient("\(message) (SQLSTATE \(state))") }
            if ["28", "3D"].contains(String(state.prefix(2))) {
                return transient("\(message) (SQLSTATE \(state)): check the index URL's role, password and database")
            }
            return .database("\(location): \(message) (SQLSTATE \(state); in: \(what))")
        }
        // The code alone ("connectionError") does not say why: refused, no such host, no TLS.
        let cause = error.underlying.map { ": \($0)" } ?? ""
        return transient("\(what): \(error.code)\(cause)")
    }

    private func transient(_ problem: String) -> StoreError {
        .io(path: location, operation: "index (\(problem))", errno: EAGAIN)
    }

    /// The statements of `sql`, split at `;` outside quoted text and `--` comments.
    static func statements(_ sql: String) -> [String] {
        var statements: [String] = []
        var current = ""
        var quote: Character?
        var comment = false
        for c in sql {
            if comment {
                if c == "\n" { comment = false; current.append(c) }
                continue
            }
            if let q = quote {
                if c == q { quote = nil }
            } else if c == "'" || c == "\"" {
                quote = c
            } else if c == "-", current.last == "-" {
                current.removeLast()
                comment = true
                continue
            } else if c == ";" {
                statements.append(current)
                current = ""
                continue
            }
            current.append(c)
        }
        statements.append(current)
        return statements.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
    }

    /// `?` → `$1`, `$2`, … outside quoted text.
    static func numberPlaceholders(_ sql: String) -> String {
        var out = ""
        var n = 0
        var quote: Character?
        for c in sql {
            if let q = quote {
                if c == q { quote = nil }
            } else if c == "'" || c == "\"" {
                quote = c
            } else if c == "?" {
                n += 1
                out += "$\(n)"
                continue
            }
            out.append(c)
        }
        return out
    }

    /// A stable 64-bit key for a lock name (FNV-1a), the same on every host.
    static func lockKey(_ name: String) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return Int(Int64(bitPattern: hash))
    }

    static func row(_ row: PostgresRow) -> Row {
        var out = Row()
        for cell in row {
            out.columns[cell.columnName] = value(cell)
        }
        return out
    }

    static func value(_ cell: PostgresCell) -> SQLValue {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int2, .int4, .int8: return (try? cell.decode(Int.self)).map(SQLValue.int) ?? .null
        case .float4, .float8: return (try? cell.decode(Double.self)).map(SQLValue.double) ?? .null
        case .bool: return (try? cell.decode(Bool.self)).map { .int($0 ? 1 : 0) } ?? .null
        default: return (try? cell.decode(String.self)).map(SQLValue.text) ?? .null
        }
    }

    static let logger: Logger = {
        var logger = Logger(label: "kvstore.postgres")
        logger.logLevel = .critical
        return logger
    }()
}
