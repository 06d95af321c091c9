import Foundation
import Store

/// Blobs whose content names were proven, with the file state each was proven on.
///
/// A client reading a pack range by range (after its layout) must get what a whole read
/// gets: the file the row names, not another blob put in its place, which the section
/// checksums, read from that same file, cannot tell. Hashing the whole file for every range
/// would cost a client reading layer by layer one pass per layer, so a proof is kept for the
/// file state it was made on (`FileIdentity`: inode, size, modification and change times);
/// a file written, replaced or renamed since is hashed again.
final class ContentProofs: @unchecked Sendable {
    private let lock = NSLock()
    private var proven: [String: (name: String, identity: FileIdentity)] = [:]
    private let capacity: Int

    init(capacity: Int = 4096) { self.capacity = capacity }

    /// Throws `StoreError.corrupt` unless `pack` holds the blob `name`. Hashed unless proven
    /// on this file state already; `always`: hashed regardless (a whole read, whose bytes
    /// reach the client without section checks).
    func check(_ pack: PackReader, named name: String, always: Bool = false) throws {
        let known = lock.withLock { proven[pack.path] }
        if !always, let known, known.name == name, known.identity == pack.identity { return }
        try pack.checkContent(named: name)
        lock.withLock {
            if proven.count >= capacity { proven.removeAll(keepingCapacity: true) }
            proven[pack.path] = (name, pack.identity)
        }
    }
}
