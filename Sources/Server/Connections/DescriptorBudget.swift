import Foundation

/// File descriptors against connections: each connection holds a socket, and while it is busy
/// a store handle (the index database and its journal files) and a blob or upload file.
enum DescriptorBudget {
    /// Descriptors a busy connection may hold.
    static let perConnection = 5
    /// Descriptors the server holds whatever the connections: event loops, standard streams,
    /// the listening socket, logs.
    static let reserved = 64

    /// Raises the soft `RLIMIT_NOFILE` to the hard one (systemd's `LimitNOFILE`, `ulimit -Hn`)
    /// and returns the soft limit now in force.
    static func raiseLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur == rlim_t.max ? Int.max / 2 : Int(clamping: limit.rlim_cur)
    }

    /// Connections that `descriptors` can serve at once.
    static func connections(within descriptors: Int) -> Int {
        max(0, (descriptors - reserved) / perConnection)
    }
}
