import Foundation

/// Work handed from the daemon's scanning loop to its workers.
///
/// Holds inbox names waiting to be claimed and files already claimed (adopted from a dead
/// daemon's work folder). `pop` blocks until there is work or the queue is closed; a
/// closed queue hands out nothing more, which is how shutdown stops the claiming.
final class InboxQueue: @unchecked Sendable {
    enum Item {
        /// A name in the inbox, not claimed yet.
        case inbox(String)
        /// A file in a work folder this process holds the lock of.
        case claimed(InboxFolder, String)

        var name: String {
            switch self {
            case .inbox(let n): n
            case .claimed(_, let n): n
            }
        }

        /// What makes an item unique among those queued: an inbox name, or a work folder's path and a name.
        var key: String {
            switch self {
            case .inbox(let n): n
            case .claimed(let folder, let n): folder.path + "/" + n
            }
        }
    }

    private let condition = NSCondition()
    private var items: [Item] = []
    private var closed = false
    /// Keys of items queued or being processed, so an item is never handed out twice at once.
    private var busy: Set<String> = []
    private var active = 0

    func push(_ item: Item) {
        condition.lock()
        defer { condition.unlock() }
        guard !closed, busy.insert(item.key).inserted else { return }
        items.append(item)
        condition.signal()
    }

    /// The next item, or nil once the queue is closed.
    func pop() -> Item? {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty && !closed { condition.wait() }
        guard !closed else { return nil }
        active += 1
        return items.removeFirst()
    }

    /// Marks an item popped earlier as finished.
    func finish(_ item: Item) {
        condition.lock()
        busy.remove(item.key)
        active -= 1
        condition.broadcast()
        condition.unlock()
    }

    /// Stops handing out work; items still queued are dropped (they are still in the inbox,
    /// or in an adopted work folder the next start adopts again).
    func close() {
        condition.lock()
        closed = true
        items.removeAll()
        condition.broadcast()
        condition.unlock()
    }

    var busyNames: Set<String> {
        condition.lock()
        defer { condition.unlock() }
        return busy
    }

    /// Items waiting, not yet handed to a worker (for progress in the log).
    var waitingCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return items.count
    }

    /// True when nothing is queued or in progress.
    var isIdle: Bool {
        condition.lock()
        defer { condition.unlock() }
        return items.isEmpty && active == 0
    }
}
