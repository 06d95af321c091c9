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
public final class InboxClaim: @unchecked Sendable {
    public let layout: InboxLayout
    public let folder: String
    private let lockFD: Int32

    /// Creates and locks a fresh work folder.
    public init(layout: InboxLayout) throws {
        self.layout = layout
        try layout.create()
        // The folder is made and locked under a dot name, then renamed into view, so no
        // other daemon can mistake it for an abandoned one before its lock is held.
        let id = UUID().uuidString.lowercased()
        let staging = layout.work + "/.new-" + id
        folder = layout.work + "/" + id
        try FileSystem.makeDirectories(staging)
        guard let fd = Self.lock(staging, create: true) else {
            throw StoreError.io(path: staging + "/.lock", operation: "flock", errno: errno)
        }
        guard rename(staging, folder) == 0 else {
            close(fd)
            throw StoreError.io(path: staging, operation: "rename to \(folder)", errno: errno)
        }
        lockFD = fd
    }

    deinit { close(lockFD) }

    /// Moves `name` from the inbox into this daemon's work folder; nil when another
    /// daemon (or the producer) took it first.
    public func claim(_ name: String) throws -> String? {
        let from = layout.inbox + "/" + name, to = folder + "/" + name
        if rename(from, to) == 0 { return to }
        if errno == ENOENT { return nil }
        throw StoreError.io(path: from, operation: "claim (rename into \(folder))", errno: errno)
    }

    /// Puts a claimed file back into the inbox (shutdown roll-back, transient failures).
    /// Returns the inbox path it now has.
    @discardableResult
    public func unclaim(_ path: String) throws -> String {
        let name = String(path.split(separator: "/").last ?? "")
        let to = InboxLayout.freePath(in: layout.inbox, for: name)
        guard rename(path, to) == 0 else { throw StoreError.io(path: path, operation: "return to inbox", errno: errno) }
        return to
    }

    /// Work folders of dead daemons: each one locked now by this process, with the files
    /// still in it. Call `release(abandoned:)` once they are all dealt with.
    public func adoptAbandoned() -> [(folder: String, lock: Int32, files: [String])] {
        var adopted: [(String, Int32, [String])] = []
        for name in FileSystem.list(layout.work) where !name.hasPrefix(".") {
            let dir = layout.work + "/" + name
            guard dir != folder, InboxLayout.isDirectory(dir), let fd = Self.lock(dir, create: true) else { continue }
            let files = FileSystem.list(dir).filter { !$0.hasPrefix(".") }.map { dir + "/" + $0 }
            adopted.append((dir, fd, files))
        }
        return adopted
    }

    /// Removes an adopted folder once its files are gone (or this daemon's own at exit).
    public static func release(folder: String, lock fd: Int32) {
        unlink(folder + "/.lock")
        rmdir(folder)
        close(fd)
    }

    /// Removes this daemon's own folder if it is empty (graceful exit).
    public func releaseOwn() {
        if FileSystem.list(folder).allSatisfy({ $0.hasPrefix(".") }) {
            unlink(folder + "/.lock")
            rmdir(folder)
        }
    }

    /// Files in this daemon's own folder (left by a failed unclaim).
    public var ownFiles: [String] {
        FileSystem.list(folder).filter { !$0.hasPrefix(".") }.map { folder + "/" + $0 }
    }

    /// Opens and exclusively flocks `dir/.lock` without waiting; nil when it is held.
    private static func lock(_ dir: String, create: Bool) -> Int32? {
        let fd = open(dir + "/.lock", O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0o644)
        guard fd >= 0 else { return nil }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 { close(fd); return nil }
        // The folder may have been removed by its previous adopter between list and open.
        guard FileSystem.exists(dir + "/.lock") else { close(fd); return nil }
        return fd
    }
}

extension InboxLayout {
    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }
}
