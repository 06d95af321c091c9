import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// A connection to the SQLite index: the few calls the store needs, errors as `StoreError`.
public final class Database: IndexConnection, @unchecked Sendable {
    private var handle: OpaquePointer?
    public let path: String
    /// The open `PATH.compact-lock` while this connection holds the compaction lock.
    private var compactionLock: Int32 = -1
    /// `PATH.lock`, held shared while this connection is open (`IndexLock`).
    private let storeLock: IndexLock?
    /// The index file this connection opened (device, inode), and whether it has since
    /// found the path naming another file or none: the fence (docs/DESIGN.md, "A replaced
    /// index is fenced").
    private var identity: (dev: UInt, ino: UInt)?
    private var fenced = false

    public var dialect: SQLDialect { .sqlite }
    public var location: String { path }

    /// Milliseconds a writer waits for the lock before "database is locked" (a transient
    /// error): `$KVSTORE_BUSY_TIMEOUT_MS`, else 10 000.
    public static var defaultBusyTimeout: Int32 {
        getenv("KVSTORE_BUSY_TIMEOUT_MS").flatMap { Int32(String(cString: $0)) }.map { max(0, $0) } ?? 10_000
    }

    /// Opens (creating if needed) a database in WAL mode that waits up to `busyTimeout`
    /// milliseconds for other writers instead of failing at once.
    public init(path: String, busyTimeout: Int32 = Database.defaultBusyTimeout) throws {
        self.path = path
        storeLock = try IndexLock(indexPath: path, mode: .shared, waitMilliseconds: busyTimeout)
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        guard sqlite3_open_v2(path, &handle, flags, nil) == SQLITE_OK else {
            let error = failure("\(path): \(handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open")")
            sqlite3_close(handle)
            throw error
        }
        identity = Self.identity(of: path)
        sqlite3_busy_timeout(handle, busyTimeout)
        // Keep -wal and -shm on disk when the last connection closes: a reader that finds
        // them there needs no free space, so `ls`, `show`, `fetch` and `serve` work on a full
        // disk (creating them would need space). Compaction truncates the WAL.
        var persist: Int32 = 1
        sqlite3_file_control(handle, "main", SQLITE_FCNTL_PERSIST_WAL, &persist)
        try execute("PRAGMA journal_mode=WAL")
        try execute("PRAGMA synchronous=FULL")
        try execute("PRAGMA foreign_keys=ON")
    }

    deinit {
        sqlite3_close_v2(handle)
        if compactionLock >= 0 { close(compactionLock) }
    }

    /// Throws `indexReplaced` once the path no longer names the file this connection
    /// opened, and for every statement after: rows written into a file no other process
    /// reads are lost to the store.
    public func checkFence() throws {
        guard !fenced else { throw StoreError.indexReplaced(path) }
        guard let identity else { return }
        if let now = Self.identity(of: path), now == identity { return }
        fenced = true
        _ = kvstore_sqlite_no_checkpoint_on_close(handle)
        throw StoreError.indexReplaced(path)
    }

    private static func identity(of path: String) -> (dev: UInt, ino: UInt)? {
        var st = stat()
        return stat(path, &st) == 0 ? (UInt(st.st_dev), UInt(st.st_ino)) : nil
    }

    /// Runs one or more statements that return no rows.
    public func execute(_ sql: String) throws {
        if sql != "ROLLBACK" { try checkFence() }  // a fence met mid-transaction still rolls back
        var error: UnsafeMutablePointer<CChar>?
        if sqlite3_exec(handle, sql, nil, nil, &error) != SQLITE_OK {
            let message = error.map { String(cString: $0) } ?? "unknown error"
            sqlite3_free(error)
            throw failure("\(message) (in: \(sql.prefix(80)))")
        }
    }

    /// Runs a statement with bound values and returns its rows.
    @discardableResult
    public func query(_ sql: String, _ values: [SQLValue] = []) throws -> [Row] {
        try checkFence()
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &stmt, nil) == SQLITE_OK else {
            throw failure("\(lastError) (in: \(sql.prefix(80)))")
        }
        defer { sqlite3_finalize(stmt) }
        for (i, v) in values.enumerated() {
            let index = Int32(i + 1)
            switch v {
            case .null: sqlite3_bind_null(stmt, index)
            case .int(let n): sqlite3_bind_int64(stmt, index, Int64(n))
            case .double(let d): sqlite3_bind_double(stmt, index, d)
            case .text(let s): sqlite3_bind_text(stmt, index, s, -1, SQLITE_TRANSIENT)
            }
        }
        var rows: [Row] = []
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw failure("\(lastError) (in: \(sql.prefix(80)))") }
            var row = Row()
            for c in 0..<sqlite3_column_count(stmt) {
                let name = String(cString: sqlite3_column_name(stmt, c))
                switch sqlite3_column_type(stmt, c) {
                case SQLITE_INTEGER: row.columns[name] = .int(Int(sqlite3_column_int64(stmt, c)))
                case SQLITE_FLOAT: row.columns[name] = .double(sqlite3_column_double(stmt, c))
                case SQLITE_NULL: row.columns[name] = .null
                default: row.columns[name] = .text(String(cString: sqlite3_column_text(stmt, c)))
                }
            }
            rows.append(row)
        }
        return rows
    }

    /// Rows changed by the last statement.
    public var changes: Int { Int(sqlite3_changes(handle)) }

    /// Runs `body` in an immediate transaction (takes the write lock up front, so two
    /// writers queue on the busy timeout instead of deadlocking), rolling back on error.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try runTransaction(begin: "BEGIN IMMEDIATE", body)
    }

    /// The write lock every transaction takes (`BEGIN IMMEDIATE`) already serialises them.
    public func transactionLock(_ name: String) throws {}

    /// An exclusive `flock` on `PATH.compact-lock`, released when the connection closes or
    /// the process dies.
    public func tryCompactionLock() throws -> Bool {
        if compactionLock >= 0 { return true }
        let lockPath = path + ".compact-lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StoreError.io(path: lockPath, operation: "open the compaction lock", errno: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = errno
            close(fd)
            if e == EWOULDBLOCK { return false }
            throw StoreError.io(path: lockPath, operation: "lock for compaction", errno: e)
        }
        compactionLock = fd
        return true
    }

    private var lastError: String { String(cString: sqlite3_errmsg(handle)) }

    /// The error for a failed call: a full disk or quota behind SQLite's generic "disk I/O
    /// error" is transient (exit 4, retried), not a damaged index.
    private func failure(_ message: String) -> StoreError {
        let e = handle.map { sqlite3_system_errno($0) } ?? 0
        if e == ENOSPC || e == EDQUOT { return .io(path: path, operation: "index database (\(message))", errno: e) }
        // A damaged file is named, with the way back (repair rebuilds the index from the blobs).
        let code = handle.map { sqlite3_errcode($0) & 0xff } ?? 0
        if code == SQLITE_NOTADB || code == SQLITE_CORRUPT {
            return .database("\(path): \(message); `kvstore repair` moves a damaged index aside and rebuilds it from the blobs")
        }
        return .database(message)
    }
}

/// A value bound to or read from SQLite.
public enum SQLValue: Sendable, Equatable {
    case null
    case int(Int)
    case double(Double)
    case text(String)
}

/// One result row, by column name.
public struct Row: Sendable {
    public var columns: [String: SQLValue] = [:]

    public init(columns: [String: SQLValue] = [:]) { self.columns = columns }

    public func int(_ name: String) -> Int? {
        if case .int(let n) = columns[name] { return n }
        if case .double(let d) = columns[name] { return Int(d) }
        return nil
    }
    public func double(_ name: String) -> Double? {
        if case .double(let d) = columns[name] { return d }
        if case .int(let n) = columns[name] { return Double(n) }
        return nil
    }
    public func text(_ name: String) -> String? {
        if case .text(let s) = columns[name] { return s }
        return nil
    }
}

private let SQLITE_TRANSIENT = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
