import Foundation
import Store

/// Open handles on one store, one per concurrent request: an index connection serves one
/// thread at a time, and SQLite in WAL mode lets several read while one writes.
final class StorePool: @unchecked Sendable {
    private let open: @Sendable () throws -> StoreRoot
    private let lock = NSLock()
    private var idle: [StoreRoot] = []
    /// Where uploads are received: the store's own temporary folder, so an upload's file
    /// is on the disk its pack is written to.
    let tempDirectory: String
    /// Writes the fetch counts idle handles hold (`flushIdle`).
    private var flusher: DispatchSourceTimer?

    init(open: @escaping @Sendable () throws -> StoreRoot) throws {
        self.open = open
        let first = try open()
        tempDirectory = first.blobs.tempDirectory
        idle.append(first)
        let timer = DispatchSource.makeTimerSource(queue: .global(qos: .utility))
        timer.schedule(deadline: .now() + EntryIndex.sharedAccessInterval, repeating: EntryIndex.sharedAccessInterval)
        timer.setEventHandler { [weak self] in self?.flushIdle() }
        timer.resume()
        flusher = timer
    }

    deinit { flusher?.cancel() }

    /// Writes the fetch counts that idle handles still hold: a handle batches its fetches on a
    /// shared index and writes them with a later fetch, so without this an idle server would
    /// keep its last ones until it stops.
    func flushIdle() {
        lock.lock()
        let handles = idle
        idle.removeAll()
        lock.unlock()
        for root in handles {
            try? root.index.flushAccesses()
            give(root)
        }
    }

    /// Runs `body` with a handle no other thread holds.
    ///
    /// When the index file was replaced or removed (a repair, a restore from a backup), every
    /// handle names the old one: they are dropped, and `body` runs once more on a handle
    /// opened afresh (docs/DESIGN.md, "A replaced index is fenced").
    func with<T>(_ body: (StoreRoot) throws -> T) throws -> T {
        let root = try take()
        do {
            let result = try body(root)
            give(root)
            return result
        } catch let error as StoreError where error.isIndexReplaced {
            lock.lock(); idle.removeAll(); lock.unlock()
            let fresh = try open()
            defer { give(fresh) }
            return try body(fresh)
        } catch {
            give(root)
            throw error
        }
    }

    /// Runs `body` off the threads that serve connections (it blocks: SQLite, decoding, fsync).
    ///
    /// Short work (an index query) runs on Dispatch's pool. Long work that itself waits for
    /// Dispatch workers (an ingest or a fetch, whose layers are coded on Dispatch's queues)
    /// gets a thread of its own: Dispatch on Linux keeps about one thread per core, so a few
    /// such waits on its own threads would leave none to do the work they wait for.
    func run<T: Sendable>(long: Bool = false, _ body: @escaping @Sendable (StoreRoot) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Self.detach(long: long) { continuation.resume(with: Result { try self.with(body) }) }
        }
    }

    /// Starts `work` on Dispatch's pool, or (`long`) on a new thread.
    static func detach(long: Bool, _ work: @escaping @Sendable () -> Void) {
        if long {
            let thread = Thread(block: work)
            thread.start()
        } else {
            DispatchQueue.global().async(execute: work)
        }
    }

    func take() throws -> StoreRoot {
        lock.lock()
        if let root = idle.popLast() { lock.unlock(); return root }
        lock.unlock()
        return try open()
    }

    func give(_ root: StoreRoot) {
        lock.lock(); defer { lock.unlock() }
        if idle.count < 32 { idle.append(root) }
    }
}
