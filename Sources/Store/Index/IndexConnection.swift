/// One connection to the database that holds a store's index: SQLite (`Database`, a file on
/// one host) or PostgreSQL (many hosts). `EntryIndex` writes its queries once, with `?`
/// placeholders, and asks the dialect for the few phrases the two spell differently.
public protocol IndexConnection: AnyObject, Sendable {
    var dialect: SQLDialect { get }
    /// Where the index is, for messages (never a password).
    var location: String { get }

    /// Runs statements that return no rows.
    func execute(_ sql: String) throws

    /// Runs one statement with bound values and returns its rows.
    @discardableResult
    func query(_ sql: String, _ values: [SQLValue]) throws -> [Row]

    /// Rows changed by the last statement.
    var changes: Int { get }

    /// Runs `body` in a transaction that writes, rolling back on error.
    func transaction<T>(_ body: () throws -> T) throws -> T

    /// Inside a transaction: waits until no other transaction holds lock `name` (a blob's
    /// name, or "migrations") and holds it until this one ends. Publishing a row for a blob
    /// and collecting the blob both take it, so "the row is written only if the blob exists"
    /// and "the blob is deleted only if no row names it" cannot both pass for one blob.
    /// SQLite's single writer already serialises them; PostgreSQL takes an advisory lock.
    func transactionLock(_ name: String) throws

    /// Takes the store's compaction lock for as long as this connection lives, or returns
    /// false when another process holds it.
    func tryCompactionLock() throws -> Bool
}

extension IndexConnection {
    @discardableResult
    public func query(_ sql: String) throws -> [Row] { try query(sql, []) }

    /// `begin`, `body`, then COMMIT; ROLLBACK when `body` or the commit throws.
    public func runTransaction<T>(begin: String, _ body: () throws -> T) throws -> T {
        try execute(begin)
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }
}

/// The phrases SQLite and PostgreSQL spell differently.
public enum SQLDialect: Sendable {
    case sqlite
    case postgres

    /// The database server's clock, as seconds since 1970.
    public var now: String {
        switch self {
        case .sqlite: "((julianday('now') - 2440587.5) * 86400.0)"
        case .postgres: "(extract(epoch from clock_timestamp())::double precision)"
        }
    }

    /// The 1-based position of `needle` in `haystack`, 0 when absent.
    public func position(of needle: String, in haystack: String) -> String {
        switch self {
        case .sqlite: "instr(\(haystack), \(needle))"
        case .postgres: "strpos(\(haystack), \(needle))"
        }
    }
}

extension SQLDialect {
    /// A query with one `?` (the table's name) that returns a row when the table exists.
    var tableExists: String {
        switch self {
        case .sqlite: "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        case .postgres: "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = ?"
        }
    }
}
