import Foundation
import NIOCore

/// The open connections of the server, so that one more never costs the server its listener:
/// at the limit, the connection that has waited longest without a request in progress (idle,
/// or still sending its head) is closed to make room; when every connection is busy with a
/// request, the new one is answered 503 and closed.
final class ConnectionTable: @unchecked Sendable {
    private struct Entry {
        var channel: any Channel
        var busy: Bool
        var idleSince: NIODeadline
    }

    enum Admission: Equatable {
        case admitted, refused
    }

    let limit: Int
    private let lock = NSLock()
    private var entries: [ObjectIdentifier: Entry] = [:]

    init(limit: Int) {
        self.limit = limit
    }

    var count: Int { lock.withLock { entries.count } }

    /// Takes `channel` in, closing the longest-idle connection if the table is full; refused
    /// when every connection is busy. An admitted channel leaves the table when it closes.
    func admit(_ channel: any Channel) -> Admission {
        let victim: (any Channel)?
        do {
            lock.lock()
            defer { lock.unlock() }
            if entries.count >= limit {
                guard let oldest = entries.filter({ !$0.value.busy }).min(by: { $0.value.idleSince < $1.value.idleSince }) else {
                    return .refused
                }
                entries[oldest.key] = nil
                victim = oldest.value.channel
            } else {
                victim = nil
            }
            entries[ObjectIdentifier(channel)] = Entry(channel: channel, busy: false, idleSince: .now())
        }
        victim?.close(promise: nil)
        let id = ObjectIdentifier(channel)
        channel.closeFuture.whenComplete { [weak self] _ in self?.remove(id) }
        return .admitted
    }

    /// A request is in progress on `channel` (busy), or none is any more.
    func mark(_ channel: any Channel, busy: Bool) {
        lock.withLock {
            let id = ObjectIdentifier(channel)
            entries[id]?.busy = busy
            if !busy { entries[id]?.idleSince = .now() }
        }
    }

    /// Waits until every connection has closed, at most `seconds`: a stream's last bytes may
    /// still be on their way to a slow reader when its request is over, and the process must
    /// not exit under them. Returns whether the table emptied.
    func drained(within seconds: Double) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while count > 0 {
            if Date() > deadline { return false }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        return true
    }

    private func remove(_ id: ObjectIdentifier) {
        lock.withLock { _ = entries.removeValue(forKey: id) }
    }
}
