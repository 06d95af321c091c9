import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The store's `index.sqlite.lock`: every process that opens a local index holds it shared for
/// as long as the index is open; `repair` holds it exclusively, so it never moves an index
/// aside under a running daemon or server, and two repairs queue instead of racing
/// (docs/DESIGN.md, "`repair` runs alone"). A `flock`, released when the process dies.
public final class IndexLock: @unchecked Sendable {
    public enum Mode: Sendable { case shared, exclusive }

    public let path: String
    private let fd: Int32

    /// Index files this process holds exclusively: its own connections to them take no
    /// shared lock (they would wait on themselves).
    private static let held = Mutex<Set<String>>([])

    /// Takes the lock beside the index file `indexPath`, waiting up to `waitMilliseconds`
    /// for a holder of the other kind. Nil when the lock file cannot be created (a full disk,
    /// a read-only store: reading goes on without it).
    public init?(indexPath: String, mode: Mode, waitMilliseconds: Int32 = Database.defaultBusyTimeout) throws {
        if mode == .shared, Self.held.withLock({ $0.contains(indexPath) }) { return nil }
        path = indexPath + ".lock"
        self.indexPath = indexPath
        self.mode = mode
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let e = errno
            if [ENOSPC, EDQUOT, EROFS, EACCES].contains(e), mode == .shared { return nil }
            throw StoreError.io(path: path, operation: "open the store lock", errno: e)
        }
        let deadline = Date().addingTimeInterval(Double(waitMilliseconds) / 1000)
        while flock(fd, (mode == .shared ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0 {
            let e = errno
            guard e == EWOULDBLOCK || e == EINTR, Date() < deadline else {
                close(fd)
                if e == EWOULDBLOCK {
                    throw StoreError.io(path: path, operation: mode == .shared
                        ? "open the index (`kvstore repair` is rebuilding it; try again when it is done)"
                        : "lock the store for repair (another process has it open: stop `kvstore watch` and `kvstore serve` on this store, or wait for the other repair, then run repair again)",
                        errno: EAGAIN)
                }
                throw StoreError.io(path: path, operation: "lock the store", errno: e)
            }
            usleep(20_000)
        }
        if mode == .exclusive { Self.held.withLock { _ = $0.insert(indexPath) } }
    }

    private let indexPath: String
    private let mode: Mode

    deinit {
        if mode == .exclusive { Self.held.withLock { _ = $0.remove(indexPath) } }
        close(fd)
    }
}
