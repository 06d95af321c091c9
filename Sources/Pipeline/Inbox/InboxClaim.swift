import CFileAttributes
import Foundation
import Store

/// One daemon's claim on inbox files: a private work folder `INBOX/.work/<id>/` whose
/// `.lock` it holds with `flock` for as long as it lives.
///
/// A file is claimed by renaming it from the inbox into the work folder. rename(2) is
/// atomic, so when two daemons race for one file exactly one rename succeeds; the other
/// gets ENOENT and moves on. The kernel drops the flock when its holder dies (even by
/// kill -9), so a work folder whose lock can be taken belongs to a dead daemon: its files
/// were claimed but maybe not finished, and `adoptAbandoned` hands them to the caller.
///
/// Every step works through the descriptors of `InboxFolders`; a work folder or lock file
/// that is a symbolic link is never followed.
public final class InboxClaim: @unchecked Sendable {
    public let folders: InboxFolders
    /// This daemon's work folder.
    public let folder: InboxFolder
    /// The work folder's name in `.work/`.
    public let id: String
    private let lockFD: Int32

    /// A dead daemon's work folder, locked by this process, and the files still in it.
    public struct Abandoned {
        public let name: String
        public let folder: InboxFolder
        let lock: Int32
        public let files: [String]
    }

    /// Creates and locks a fresh work folder.
    public init(folders: InboxFolders) throws {
        self.folders = folders
        // The folder is made and locked under a dot name, then renamed into view, so no
        // other daemon can mistake it for an abandoned one before its lock is held.
        id = UUID().uuidString.lowercased()
        let staging = try folders.work.child(".new-" + id)
        guard let fd = Self.lock(staging) else {
            throw StoreError.io(path: staging.path + "/.lock", operation: "flock", errno: errno)
        }
        guard try folders.work.move(".new-" + id, to: folders.work, as: id) == .moved else {
            close(fd)
            throw StoreError.io(path: staging.path, operation: "rename to \(id)", errno: EEXIST)
        }
        folder = try folders.work.child(id)
        lockFD = fd
    }

    deinit { close(lockFD) }

    /// Moves `name` from the inbox into this daemon's work folder; returns its name there
    /// (the same, unless a file of that name was left there), or nil when another daemon
    /// (or the producer) took it first. `raw`: the name's bytes when not valid UTF-8.
    public func claim(_ name: String, raw: [CChar]? = nil) throws -> String? {
        try folders.inbox.moveToFreeName(name, raw: raw, to: folder)
    }

    /// Puts a claimed file back into the inbox (shutdown roll-back, transient failures)
    /// without replacing a newer file of the same name; returns its name there.
    @discardableResult
    public func unclaim(_ name: String, from source: InboxFolder) throws -> String? {
        try source.moveToFreeName(name, to: folders.inbox)
    }

    /// Work folders of dead daemons: each one locked now by this process, with the files
    /// still in it. Call `release` once they are all dealt with.
    public func adoptAbandoned() -> [Abandoned] {
        var adopted: [Abandoned] = []
        for entry in folders.work.entries() where entry.kind == .folder && !entry.name.hasPrefix(".") {
            guard entry.name != id, let dir = try? folders.work.child(entry.name), let fd = Self.lock(dir) else { continue }
            adopted.append(Abandoned(name: entry.name, folder: dir, lock: fd, files: dir.visibleNames))
        }
        return adopted
    }

    /// Ingests of the claimed file `name` that began and never ended: counted on the file itself
    /// (extended attribute `user.kvstore.ingests`, which follows it through renames), one more
    /// at each start (`noteIngestStart`), cleared when it goes back to the inbox. A file found in
    /// a dead daemon's folder with a high count crashed every daemon that read it, and would
    /// crash the next one too. 0 where the filesystem keeps no such attributes.
    public func unfinishedIngests(_ name: String, in folder: InboxFolder) -> Int {
        Self.withEntry(name, in: folder, Self.count) ?? 0
    }

    /// Counts one more ingest of `name` begun (see `unfinishedIngests`).
    public func noteIngestStart(_ name: String, in folder: InboxFolder) {
        _ = Self.withEntry(name, in: folder) { fd in
            let text = Array(String(Self.count(fd) + 1).utf8)
            return kvstore_fsetxattr(fd, Self.ingestsAttribute, text, UInt(text.count))
        }
    }

    /// Forgets `name`'s begun ingests: it ended (it goes back to the inbox to be tried again).
    public func clearIngestStarts(_ name: String, in folder: InboxFolder) {
        _ = Self.withEntry(name, in: folder) { kvstore_fremovexattr($0, Self.ingestsAttribute) }
    }

    /// `body` on the file `name` opened for reading (no link followed); nil when it does not open.
    private static func withEntry<T>(_ name: String, in folder: InboxFolder, _ body: (Int32) -> T) -> T? {
        let fd = folder.openEntry(name, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return body(fd)
    }

    private static func count(_ fd: Int32) -> Int {
        var buffer = [UInt8](repeating: 0, count: 16)
        let read = kvstore_fgetxattr(fd, ingestsAttribute, &buffer, UInt(buffer.count))
        return read > 0 ? Int(String(decoding: buffer.prefix(read), as: UTF8.self)) ?? 0 : 0
    }

    /// The extended attribute that counts a file's begun, unfinished ingests.
    public static let ingestsAttribute = "user.kvstore.ingests"

    /// Removes an adopted folder once its files are gone; keeps it (unlocked) otherwise.
    public func release(_ a: Abandoned) {
        if a.folder.visibleNames.isEmpty {
            try? a.folder.remove(".lock")
            folders.work.removeFolder(a.name)
        }
        close(a.lock)
    }

    /// Removes this daemon's own folder if it is empty (graceful exit).
    public func releaseOwn() {
        guard ownFiles.isEmpty else { return }
        try? folder.remove(".lock")
        folders.work.removeFolder(id)
    }

    /// Files in this daemon's own folder (left by a failed unclaim).
    public var ownFiles: [String] { folder.visibleNames }

    /// Opens and exclusively flocks `dir/.lock` without waiting; nil when it is held.
    private static func lock(_ dir: InboxFolder) -> Int32? {
        let fd = dir.openEntry(".lock", O_RDWR | O_CREAT)
        guard fd >= 0 else { return nil }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 { close(fd); return nil }
        // The folder may have been removed by its previous adopter between list and open.
        guard dir.contains(".lock"), dir.displacement() == nil else { close(fd); return nil }
        return fd
    }
}
