import CLinux
import Foundation
import Store

/// One folder of an inbox, held open by descriptor.
///
/// Every operation on the folder's entries goes through the descriptor (`openat`,
/// `renameat2`, `unlinkat`, `fstatat`), so it happens in the directory that was opened and
/// checked at start, whatever is renamed, removed or replaced by a symbolic link in the
/// inbox afterwards. Folders inside the inbox are opened one component at a time with
/// `O_NOFOLLOW | O_DIRECTORY`: a symbolic link in their place is refused, never followed.
/// Anyone who can write to the inbox can therefore make the daemon write only inside it.
public final class InboxFolder: @unchecked Sendable {
    /// The path it was opened as: for messages only, never used to reach the folder.
    public let path: String
    let fd: Int32
    /// Where the folder was found: a parent folder and a name in it, or nil for a folder
    /// the operator named by path (the inbox itself, `--done DIR` outside it).
    private let parent: (folder: InboxFolder, name: String)?
    private let identity: (dev: UInt, ino: UInt)

    private init(path: String, fd: Int32, parent: (InboxFolder, String)?) {
        self.path = path
        self.fd = fd
        self.parent = parent
        var st = stat()
        fstat(fd, &st)
        identity = (UInt(st.st_dev), UInt(st.st_ino))
    }

    deinit { close(fd) }

    /// Opens a folder the operator named, creating it (and its parents) if missing. The
    /// path is taken as the operator wrote it, symbolic links included.
    public static func named(_ path: String) throws -> InboxFolder {
        try FileSystem.makeDirectories(path)
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.io(path: path, operation: "open folder", errno: errno) }
        return InboxFolder(path: path, fd: fd, parent: nil)
    }

    /// Opens the folder `name` in this one, creating it if missing; a symbolic link or a
    /// file in its place is refused.
    public func child(_ name: String) throws -> InboxFolder {
        let childPath = path + "/" + name
        if mkdirat(fd, name, 0o755) != 0, errno != EEXIST {
            throw StoreError.io(path: childPath, operation: "mkdir", errno: errno)
        }
        let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard child >= 0 else {
            let e = errno
            switch kind(of: name) {
            case .link: throw InboxError.symbolicLink(path: childPath)
            case .file, .other: throw InboxError.notAFolder(path: childPath)
            default: throw StoreError.io(path: childPath, operation: "open folder", errno: e)
            }
        }
        return InboxFolder(path: childPath, fd: child, parent: (self, name))
    }

    /// Opens `relative` (a/b/c) below this folder, one component at a time.
    public func descendant(_ relative: String) throws -> InboxFolder {
        var folder = self
        for part in relative.split(separator: "/") where part != "." { folder = try folder.child(String(part)) }
        return folder
    }

    /// Nil while the folder is still where it was opened; otherwise what is there now.
    /// A folder is "where it was opened" when its name in its parent (or the operator's
    /// path) still leads to the same directory, without following a link, and so on up.
    public func displacement() -> String? {
        var st = stat()
        if let parent {
            if let outer = parent.folder.displacement() { return outer }
            guard fstatat(parent.folder.fd, parent.name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return "nothing (removed or renamed)" }
        } else {
            guard stat(path, &st) == 0 else { return "nothing (removed or renamed)" }
        }
        switch st.st_mode & S_IFMT {
        case S_IFLNK: return "a symbolic link"
        case S_IFDIR: return (UInt(st.st_dev), UInt(st.st_ino)) == identity ? nil : "another folder"
        default: return "a file"
        }
    }

    /// The filesystem the folder is on.
    public var device: UInt { identity.dev }

    // MARK: Entries

    public enum Kind: Sendable { case file, folder, link, other, missing }

    /// An entry of the folder. `rawName` holds the name's bytes (NUL-terminated) when they
    /// are not valid UTF-8; `name` is then its escaped form (`InboxName.escaped`).
    public struct Entry: Sendable {
        public var name: String
        public var rawName: [CChar]?
        public var kind: Kind
    }

    /// The folder's entries, without `.` and `..`, sorted by name.
    public func entries() -> [Entry] {
        // A descriptor of its own (not a dup, which would share the read position with
        // any other listing of this folder).
        let own = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard own >= 0, let dir = fdopendir(own) else {
            if own >= 0 { close(own) }
            return []
        }
        defer { closedir(dir) }
        var entries: [Entry] = []
        while let entry = readdir(dir) {
            let raw = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { Array(UnsafeBufferPointer(start: $0, count: strlen($0))) }
            }
            let valid = String(validating: raw.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let name = valid ?? InboxName.escaped(raw.map { UInt8(bitPattern: $0) })
            guard name != ".", name != ".." else { continue }
            let kind: Kind = switch Int32(entry.pointee.d_type) {
            case Int32(DT_REG): .file
            case Int32(DT_DIR): .folder
            case Int32(DT_LNK): .link
            case Int32(DT_UNKNOWN): valid == nil ? self.kind(raw: raw + [0]) : self.kind(of: name)
            default: .other
            }
            entries.append(Entry(name: name, rawName: valid == nil ? raw + [0] : nil, kind: kind))
        }
        return entries.sorted { $0.name < $1.name }
    }

    /// What `name` is, without following a link.
    public func kind(of name: String) -> Kind { kind(raw: Array(name.utf8CString)) }

    private func kind(raw: [CChar]) -> Kind {
        var st = stat()
        guard fstatat(fd, raw, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return .missing }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return .file
        case S_IFDIR: return .folder
        case S_IFLNK: return .link
        default: return .other
        }
    }

    /// Size and modification time of the regular file `name`; nil for anything else.
    func fileStatus(_ name: String) -> (size: Int, mtime: Double)? { fileStatus(raw: Array(name.utf8CString)) }

    /// The same for a name given as its bytes (NUL-terminated; `Entry.rawName`).
    func fileStatus(raw: [CChar]) -> (size: Int, mtime: Double)? {
        var st = stat()
        guard fstatat(fd, raw, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFREG else { return nil }
        return (Int(st.st_size), Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
    }

    public func contains(_ name: String) -> Bool { kind(of: name) != .missing }

    /// Names of the entries that do not start with a dot.
    public var visibleNames: [String] { entries().map(\.name).filter { !$0.hasPrefix(".") } }

    // MARK: Changes

    public enum MoveResult: Sendable { case moved, sourceGone, targetExists }

    /// Renames `name` to `newName` in `target` unless that name is taken (RENAME_NOREPLACE,
    /// so two daemons moving inputs of the same name never overwrite one another).
    public func move(_ name: String, to target: InboxFolder, as newName: String) throws -> MoveResult {
        try move(raw: Array(name.utf8CString), displayName: name, to: target, as: newName)
    }

    private func move(raw: [CChar], displayName: String, to target: InboxFolder, as newName: String) throws -> MoveResult {
        if kvstore_rename_noreplace(fd, raw, target.fd, newName) == 0 { return .moved }
        switch errno {
        case ENOENT: return .sourceGone
        case EEXIST: return .targetExists
        case EINVAL where target.kind(of: newName) == .missing:
            // A filesystem without RENAME_NOREPLACE: check, then rename (a narrow race).
            if renameat(fd, raw, target.fd, newName) == 0 { return .moved }
            if errno == ENOENT { return .sourceGone }
            fallthrough
        default:
            throw StoreError.io(path: path + "/" + displayName, operation: "rename to \(target.path)/\(newName)", errno: errno)
        }
    }

    /// Moves `name` into `target` under `InboxName.numbered(name, n, reserve:)` with the
    /// smallest n that is free there (and for which `alsoFree(candidate)` is free too);
    /// returns the new name, or nil when `name` is gone.
    /// `raw`: the name's bytes when they are not valid UTF-8 (`Entry.rawName`).
    public func moveToFreeName(_ name: String, raw: [CChar]? = nil, to target: InboxFolder, as wanted: String? = nil,
                               alsoFree suffix: String? = nil) throws -> String? {
        let base = wanted ?? name
        var n = -1
        while true {
            n += 1
            let candidate = InboxName.numbered(base, n, reserve: suffix?.utf8.count ?? 0)
            if let suffix, target.contains(candidate + suffix) { continue }
            switch try move(raw: raw ?? Array(name.utf8CString), displayName: name, to: target, as: candidate) {
            case .moved: return candidate
            case .sourceGone: return nil
            case .targetExists: continue
            }
        }
    }

    /// Removes the file `name` (a missing one is not an error).
    public func remove(_ name: String) throws {
        if unlinkat(fd, name, 0) != 0, errno != ENOENT {
            throw StoreError.io(path: path + "/" + name, operation: "unlink", errno: errno)
        }
    }

    /// Removes the empty folder `name`; false when it is not empty or not there.
    @discardableResult
    public func removeFolder(_ name: String) -> Bool { unlinkat(fd, name, AT_REMOVEDIR) == 0 }

    /// Opens the entry `name` without following a link (O_NOFOLLOW).
    func openEntry(_ name: String, _ flags: Int32, mode: mode_t = 0o644) -> Int32 {
        openEntry(raw: Array(name.utf8CString), flags, mode: mode)
    }

    /// The same for a name given as its bytes (NUL-terminated; `Entry.rawName`).
    func openEntry(raw: [CChar], _ flags: Int32, mode: mode_t = 0o644) -> Int32 {
        openat(fd, raw, flags | O_NOFOLLOW | O_CLOEXEC, mode)
    }

    /// Makes renames and creations in the folder durable.
    func sync() throws {
        guard fsync(fd) == 0 else { throw StoreError.io(path: path, operation: "fsync folder", errno: errno) }
    }
}
