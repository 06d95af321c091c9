import Foundation
import Store

/// Open handles on one store, one per concurrent request: an index connection serves one
/// thread at a time, and SQLite in WAL mode lets several read while one writes.
final class StorePool: @unchecked Sendable {
    let path: String
    private let lock = NSLock()
    private var idle: [StoreRoot] = []

    init(path: String) throws {
        self.path = path
        idle.append(try StoreRoot(path: path))
    }

    /// Runs `body` with a handle no other thread holds.
    func with<T>(_ body: (StoreRoot) throws -> T) throws -> T {
        let root = try take()
        defer { give(root) }
        return try body(root)
    }

    /// Runs `body` on a thread of its own (it blocks: SQLite, decoding, fsync), not on the
    /// threads that serve connections.
    func run<T: Sendable>(_ body: @escaping @Sendable (StoreRoot) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try self.with(body) })
            }
        }
    }

    func take() throws -> StoreRoot {
        lock.lock()
        if let root = idle.popLast() { lock.unlock(); return root }
        lock.unlock()
        return try StoreRoot(path: path)
    }

    func give(_ root: StoreRoot) {
        lock.lock(); defer { lock.unlock() }
        if idle.count < 32 { idle.append(root) }
    }
}
