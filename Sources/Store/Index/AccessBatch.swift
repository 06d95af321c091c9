import Foundation

/// Fetches counted in memory until they are written together (`EntryIndex.touch`): entry id
/// to the number of fetches and the time of the last.
struct AccessBatch {
    /// Seconds between writes to a shared index: one statement per node every 10 s, whatever
    /// its fetch rate; a crash loses at most that much of the statistics, never an entry.
    static let sharedInterval: Double = 10

    let interval: Double
    private var pending: [String: (count: Int, last: Double)] = [:]
    private var lastWrite: Double = Date().timeIntervalSince1970

    init(interval: Double) { self.interval = interval }

    mutating func record(_ id: String, at time: Double) {
        let previous = pending[id]
        pending[id] = ((previous?.count ?? 0) + 1, max(previous?.last ?? 0, time))
    }

    func isDue(now: Double) -> Bool { !pending.isEmpty && now - lastWrite >= interval }

    /// The pending rows as (id, count, last) values, and how many rows; nil when none. They
    /// stay pending until `written`: a batch that failed to write goes with the next one.
    func pendingValues() -> (values: [SQLValue], rows: Int)? {
        guard !pending.isEmpty else { return nil }
        let values = pending.sorted { $0.key < $1.key }.flatMap { [SQLValue.text($0.key), .int($0.value.count), .double($0.value.last)] }
        return (values, pending.count)
    }

    mutating func written(at now: Double) {
        pending.removeAll()
        lastWrite = now
    }
}
