import Foundation

/// The temporary files of fetch outputs not yet published, so that a fetch stopped by
/// SIGTERM or SIGINT removes them before it exits: they lie in the user's folder, where no
/// `repair` or compaction collects them (the store's own temporary files are its garbage to
/// collect; docs/design/store.md).
public final class TemporaryOutputs: @unchecked Sendable {
    public static let shared = TemporaryOutputs()
    private let lock = NSLock()
    private var paths: Set<String> = []

    func add(_ path: String) { lock.withLock { _ = paths.insert(path) } }
    func remove(_ path: String) { lock.withLock { _ = paths.remove(path) } }

    /// Removes every file still pending.
    public func removeAll() {
        lock.withLock {
            for path in paths { unlink(path) }
            paths.removeAll()
        }
    }

    /// Until the returned value is released: SIGTERM or SIGINT removes the pending files and
    /// exits as the signal would have (128 + its number).
    public static func removedOnSignal() -> ShutdownSignals {
        ShutdownSignals { sig in
            shared.removeAll()
            _exit(128 + sig)
        }
    }
}
