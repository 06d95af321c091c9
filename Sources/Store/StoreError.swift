import LightKV

/// Failures of the store, each naming the file, the field and the value involved.
public enum StoreError: Error, CustomStringConvertible {
    /// A stored or input file does not hold what it should (CLI exit code 3).
    case corrupt(path: String, problem: String)
    /// A snapshot failed validation (CLI exit code 3).
    case invalidSnapshot(path: String, KVSnapError)
    /// No entry matches an id, id prefix or key (CLI exit code 2).
    case notFound(String)
    /// An id prefix names more than one entry (CLI exit code 2).
    case ambiguous(prefix: String, matches: [String])
    /// The operating system refused a file operation.
    case io(path: String, operation: String, errno: Int32)
    /// SQLite reported an error.
    case database(String)
    /// A policy string or setting is not understood (CLI exit code 1).
    case badPolicy(PolicyError)

    public var description: String {
        switch self {
        case .corrupt(let path, let problem): "\(path): corrupt: \(problem)"
        case .invalidSnapshot(let path, let e): "\(path): invalid kvsnap: \(e)"
        case .notFound(let what): "no entry matches \(what)"
        case .ambiguous(let prefix, let matches):
            "id prefix \(prefix) is ambiguous: \(matches.prefix(5).joined(separator: ", "))\(matches.count > 5 ? ", …" : "")"
        case .io(let path, let op, let errno): "\(path): \(op) failed: \(String(cString: strerror(errno)))"
        case .database(let message): "index database: \(message)"
        case .badPolicy(let e): "\(e)"
        }
    }

    /// True for a failed system call (`io`): the file could not be read, which says nothing
    /// about its bytes.
    public var isIO: Bool {
        if case .io = self { return true }
        return false
    }

    /// The index file this process opened was removed or replaced (`Database`'s fence).
    public static func indexReplaced(_ path: String) -> StoreError {
        .io(path: path, operation: "write (the index file was removed or replaced since this process opened it, so nothing more is written into the old one; reopen the store)", errno: ESTALE)
    }

    /// True for `indexReplaced`: reopening the store is the remedy.
    public var isIndexReplaced: Bool {
        if case .io(_, _, ESTALE) = self { return true }
        return false
    }

    /// True for failures worth retrying later (disk full, database busy, index replaced).
    public var isTransient: Bool {
        switch self {
        case .io(_, _, let e): e == ENOSPC || e == EAGAIN || e == EINTR || e == EDQUOT || e == ESTALE
        case .database(let m): m.contains("locked") || m.contains("busy") || m.contains("disk is full")
        default: false
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
