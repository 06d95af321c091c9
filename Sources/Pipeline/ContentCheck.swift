import Foundation
import Store

/// The content names of a fetch's blobs (its pack, and its segment when it has one), hashed on
/// a thread of their own while the output is written, for an output published only when it is
/// complete (a file renamed into place): the check then costs the fetch no pass before its
/// first byte, and the file is still never published unless both names hold
/// (docs/design/store.md, "Guarantees").
final class ContentCheck: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var failure: Error?

    /// Starts hashing `blobs` (each reader with the name its row gives it).
    init(_ blobs: [(reader: PackReader, name: String)]) {
        let thread = Thread { [self] in
            do { for b in blobs { try b.reader.checkContent(named: b.name) } } catch { failure = error }
            done.signal()
        }
        thread.start()
    }

    /// Waits for the hashes; throws what a mismatch threw.
    func wait() throws {
        done.wait()
        if let failure { throw failure }
    }
}
