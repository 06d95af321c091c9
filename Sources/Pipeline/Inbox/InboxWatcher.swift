import Foundation
import Store

/// Finds inbox files that are complete and ready to claim.
///
/// A file is ready when nobody is still writing it. Three signals decide, strongest first:
/// - **inotify** (IN_CLOSE_WRITE, IN_MOVED_TO): the producer closed the file or renamed it
///   in; ready at once.
/// - **write lease probe**: Linux grants a read lease (`F_SETLEASE`) only when no process
///   has the file open for writing, so a refused lease means "still being written". Where
///   leases are not available (another owner without CAP_LEASE, a filesystem without
///   them) the probe says nothing and the settle check alone decides.
/// - **settle check** (initial scan, polling mode, and files inotify missed): the size and
///   modification time are unchanged between two looks and the file has not been modified
///   for `settle` seconds.
///
/// A producer that writes a file slowly in place is therefore never claimed half-written
/// while it holds the file open; one that closes and reopens it with pauses longer than
/// `settle` should write `NAME.part` and rename it instead (docs/JOBS.md).
public final class InboxWatcher {
    public enum Mode: String, Sendable { case inotify, polling }

    public let layout: InboxLayout
    public let settle: Double
    public let interval: Double
    public let mode: Mode
    private let inotify: Inotify?
    private var closed: Set<String> = []
    private var seen: [String: Observation] = [:]

    private struct Observation: Equatable {
        var size: Int
        var mtime: Double
    }

    /// `interval` is how often the inbox is rescanned (and, in polling mode, the only way
    /// files are found).
    public init(layout: InboxLayout, settle: Double = 1.0, interval: Double = 0.25, forcePolling: Bool = false) {
        self.layout = layout
        self.settle = settle
        self.interval = interval
        inotify = forcePolling ? nil : Inotify(directory: layout.inbox)
        mode = inotify == nil ? .polling : .inotify
    }

    /// Waits up to one interval for something to happen in the inbox.
    public func wait() {
        if let inotify {
            let (names, _) = inotify.wait(timeout: interval)
            closed.formUnion(names.filter(InboxLayout.isCandidate))
        } else {
            usleep(UInt32(interval * 1_000_000))
        }
    }

    /// Names in the inbox that are complete now, skipping `excluding`.
    public func ready(excluding: Set<String>) -> [String] {
        let now = Date().timeIntervalSince1970
        var ready: [String] = []
        var stillThere: [String: Observation] = [:]
        for name in layout.candidates() where !excluding.contains(name) {
            let path = layout.inbox + "/" + name
            guard let size = FileSystem.size(path), let mtime = FileSystem.modified(path) else { continue }
            let now_ = Observation(size: size, mtime: mtime)
            defer { stillThere[name] = now_ }
            let settled = seen[name] == now_ && now - mtime >= settle
            guard closed.contains(name) || settled else { continue }
            if WriteProbe.isOpenForWriting(path) == true { continue }
            ready.append(name)
        }
        seen = stillThere
        closed.subtract(ready)
        closed.formIntersection(Set(stillThere.keys))
        return ready
    }
}
