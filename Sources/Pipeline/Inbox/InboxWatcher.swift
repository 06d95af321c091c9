import Foundation
import Store

/// Finds inbox files that are complete and ready to claim.
///
/// A file is ready when nobody is still writing it:
/// - **renamed in** (inotify IN_MOVED_TO): the producer wrote it elsewhere (`NAME.part`,
///   another folder) and renamed it in, the documented way to hand over a complete file;
/// - **settled** (every other file, found by a scan or announced by IN_CLOSE_WRITE): its
///   size and mtime have not changed over the last `settle` seconds (seen unchanged by at
///   least two scans, for `settle` seconds or since an mtime `settle` seconds old). A close
///   only wakes the scan: a producer that writes a file in place in several open / append /
///   close rounds closes it many times before it is complete;
/// - and in both cases the **write-lease probe** agrees: Linux grants a read lease
///   (`F_SETLEASE`) only when no process has the file open for writing, so a refused lease
///   means "still being written". Where leases are not available (another owner without
///   CAP_LEASE, a filesystem without them) the probe says nothing and the rules above decide.
///
/// A producer that pauses longer than `settle` between rounds with the file closed should
/// write `NAME.part` and rename it instead (docs/JOBS.md).
///
/// Entries that are neither files nor folders (symbolic links, FIFOs, sockets, devices) are
/// ready at once: they are never read, only claimed and moved to failed/ with a report, so
/// every input reaches an end. A name that is not valid UTF-8 is first renamed in place to
/// its escaped form (`InboxName.escaped`), so the rest of the daemon deals in readable names.
public final class InboxWatcher {
    public enum Mode: String, Sendable { case inotify, polling }

    public let inbox: InboxFolder
    public let settle: Double
    public let interval: Double
    public let mode: Mode
    private let inotify: Inotify?
    private var movedIn: Set<String> = []
    /// Each file's size and mtime at the last scan, and since when they have been so.
    private var seen: [String: (Observation, since: Double)] = [:]
    /// Inputs renamed because their names were not UTF-8, since the last call to `ready`.
    public private(set) var renamed: [(from: String, to: String)] = []

    private struct Observation: Equatable {
        var size: Int
        var mtime: Double
    }

    /// `interval` is how often the inbox is rescanned (and, in polling mode, the only way
    /// files are found).
    public init(inbox: InboxFolder, settle: Double = 1.0, interval: Double = 0.25, forcePolling: Bool = false) {
        self.inbox = inbox
        self.settle = settle
        self.interval = interval
        inotify = forcePolling ? nil : Inotify(directory: inbox.path)
        mode = inotify == nil ? .polling : .inotify
    }

    /// Waits up to one interval for something to happen in the inbox.
    public func wait() {
        if let inotify {
            let (events, _) = inotify.wait(timeout: interval)
            movedIn.formUnion(events.filter { $0.movedIn && InboxLayout.isCandidate($0.name) }.map(\.name))
        } else {
            usleep(UInt32(interval * 1_000_000))
        }
    }

    /// Names of the inputs waiting in the inbox now (complete or not).
    public func candidates() -> [InboxFolder.Entry] {
        inbox.entries().filter { $0.kind != .folder && $0.kind != .missing && InboxLayout.isCandidate($0.name) }
    }

    /// Names in the inbox that are complete now, skipping `excluding`.
    public func ready(excluding: Set<String>) -> [String] {
        let now = Date().timeIntervalSince1970
        var ready: [String] = []
        var stillThere: [String: (Observation, since: Double)] = [:]
        renamed = []
        for entry in candidates() where !excluding.contains(entry.name) {
            let name = entry.name
            // A name that is not UTF-8 is escaped by a rename, but only once the file is complete
            // under its own name: renamed at first sight, a file written in several opens was
            // cut into pieces (each open made a new file under the old name).
            if let raw = entry.rawName, entry.kind != .file {
                if let to = try? inbox.moveToFreeName(name, raw: raw, to: inbox) { renamed.append((name, to)) }
                continue
            }
            guard entry.kind == .file else {
                ready.append(name)
                continue
            }
            guard let status = entry.rawName.map({ inbox.fileStatus(raw: $0) }) ?? inbox.fileStatus(name) else { continue }
            let observation = Observation(size: status.size, mtime: status.mtime)
            let unchanged = seen[name]?.0 == observation
            let since = unchanged ? seen[name]!.since : now
            stillThere[name] = (observation, since)
            let settled = unchanged && max(now - since, now - status.mtime) >= settle
            guard movedIn.contains(name) || settled else { continue }
            if isBeingWritten(raw: entry.rawName ?? Array(name.utf8CString)) { continue }
            if let raw = entry.rawName {
                guard let to = try? inbox.moveToFreeName(name, raw: raw, to: inbox) else { continue }
                renamed.append((name, to))
                ready.append(to)
                continue
            }
            ready.append(name)
        }
        seen = stillThere
        movedIn.subtract(ready)
        movedIn.formIntersection(Set(stillThere.keys))
        return ready
    }

    /// The write-lease probe, on the file opened without following a link. A file this daemon
    /// may not open (another user's, mode 0600) is not taken for one being written, which left
    /// it in the inbox forever without a word: it is claimed, and fails with its reason.
    private func isBeingWritten(raw: [CChar]) -> Bool {
        let fd = inbox.openEntry(raw: raw, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { return errno != EACCES && errno != EPERM }
        defer { close(fd) }
        return WriteProbe.isOpenForWriting(fd: fd) == true
    }
}
