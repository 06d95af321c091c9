import CLinux
import Foundation

/// Blobs as files in a store root (docs/DESIGN.md, "Files under a store root"):
///
///     ROOT/blobs/ab/<name>.kvpack one kvpack file per entry, named by its content (XXH3-128)
///     ROOT/tmp/                   files being written; anything here after a crash is garbage
///
/// A blob is its own readable file, so a reader that mapped it keeps it after it is deleted.
public struct LocalBlobStore: BlobStore {
    public let root: String

    /// Blobs under `root`, creating its directories as needed.
    public init(root: String) throws {
        self.root = root
        try FileSystem.makeDirectories(root + "/blobs")
        try FileSystem.makeDirectories(root + "/tmp")
    }

    public var tempDirectory: String { root + "/tmp" }

    public var place: String { URL(fileURLWithPath: root).resolvingSymlinksInPath().path }

    /// `ROOT/store-id`: the id of the store whose index these blobs belong to.
    public func storeMarker() throws -> String? {
        let path = root + "/store-id"
        guard FileSystem.exists(path) else { return nil }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw StoreError.io(path: path, operation: "read the store marker", errno: EIO)
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func writeStoreMarker(_ id: String) throws {
        let path = root + "/store-id"
        let file = try AtomicFile(finalPath: path, tempPath: "\(tempDirectory)/store-id.\(UUID().uuidString.lowercased()).tmp")
        try file.write(Array((id + "\n").utf8))
        try file.commit()
    }

    public func newTempFile() throws -> AtomicFile {
        let name = "\(tempDirectory)/\(UUID().uuidString.lowercased()).kvpack.tmp"
        return try AtomicFile(finalPath: name, tempPath: name)
    }

    /// fsync, rename into blobs/, fsync the directory (`AtomicFile.commit`).
    public func publish(_ temp: AtomicFile, as name: String) throws -> String {
        let path = location(name)
        try temp.commit(to: path)
        return path
    }

    public func readablePath(_ name: String) throws -> String { location(name) }

    public func location(_ name: String) -> String {
        "\(root)/blobs/\(name.prefix(2))/\(name).kvpack"
    }

    /// Only a regular file is a blob: a FIFO, a directory or a socket at a blob's path is
    /// reported by `strays` and never opened or unlinked as one.
    public func attributes(_ name: String) throws -> BlobAttributes? {
        var st = stat()
        guard lstat(location(name), &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let modified = Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
        return BlobAttributes(bytes: Int(st.st_size), modified: modified, age: Date().timeIntervalSince1970 - modified)
    }

    /// Regular files named `<name>.kvpack` in their own fan-out folder (`name.prefix(2)`).
    public func names() throws -> [String] {
        FileSystem.list(root + "/blobs").flatMap { dir in
            FileSystem.list("\(root)/blobs/\(dir)").compactMap { file -> String? in
                guard file.hasSuffix(".kvpack") else { return nil }
                let name = String(file.dropLast(7))
                return name.prefix(2) == dir && Self.isRegular("\(root)/blobs/\(dir)/\(file)") ? name : nil
            }
        }
    }

    /// Everything under blobs/ that is not a blob in its place: a file of another type, a
    /// folder inside a fan-out folder, or a pack in the wrong folder (`name` set: `reshelve`
    /// moves it home).
    public func strays() throws -> [BlobStray] {
        var found: [BlobStray] = []
        for dir in FileSystem.list(root + "/blobs") {
            let folder = "\(root)/blobs/\(dir)"
            guard Self.kind(folder) == S_IFDIR else {
                found.append(BlobStray(path: folder, problem: "not a fan-out folder (\(Self.describe(folder)))"))
                continue
            }
            for file in FileSystem.list(folder) {
                let path = folder + "/" + file
                guard file.hasSuffix(".kvpack") else {
                    found.append(BlobStray(path: path, problem: "not a blob (\(Self.describe(path)))"))
                    continue
                }
                let name = String(file.dropLast(7))
                if !Self.isRegular(path) {
                    found.append(BlobStray(path: path, problem: "\(Self.describe(path)), not a regular file: skipped"))
                } else if name.prefix(2) != dir {
                    found.append(BlobStray(path: path, problem: "a pack outside its fan-out folder \(name.prefix(2))/", name: name))
                }
            }
        }
        return found
    }

    /// Moves a pack found in the wrong fan-out folder to its own, unless a file is there.
    public func reshelve(_ stray: BlobStray) throws -> Bool {
        guard let name = stray.name else { return false }
        let target = location(name)
        try FileSystem.makeDirectories(FileSystem.directory(of: target))
        guard kvstore_rename_noreplace(AT_FDCWD, stray.path, AT_FDCWD, target) == 0 else {
            if errno == EEXIST || errno == ENOENT { return false }
            throw StoreError.io(path: stray.path, operation: "move to \(target)", errno: errno)
        }
        try FileSystem.syncDirectory(of: target)
        try FileSystem.syncDirectory(of: stray.path)
        return true
    }

    public func delete(_ name: String) throws {
        // Never unlink what is not a blob (a folder or a FIFO someone put there).
        guard try attributes(name) != nil else { return }
        try FileSystem.remove(location(name))
    }

    private static func kind(_ path: String) -> mode_t? {
        var st = stat()
        return lstat(path, &st) == 0 ? st.st_mode & S_IFMT : nil
    }

    private static func isRegular(_ path: String) -> Bool { kind(path) == S_IFREG }

    private static func describe(_ path: String) -> String {
        switch kind(path) {
        case S_IFDIR: "a directory"
        case S_IFIFO: "a FIFO"
        case S_IFSOCK: "a socket"
        case S_IFLNK: "a symbolic link"
        case S_IFCHR, S_IFBLK: "a device"
        case S_IFREG: "a regular file"
        default: "gone"
        }
    }
}
