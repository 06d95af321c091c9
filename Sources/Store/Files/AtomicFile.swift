import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// A file written under a temporary name and published by rename, so no reader ever sees
/// it half-written under its final name.
///
/// `commit` fsyncs the data, renames it into place and fsyncs the directory, so the file
/// survives a crash once `commit` returns. A writer that is dropped without `commit`
/// removes its temporary file.
public final class AtomicFile {
    public private(set) var finalPath: String
    public let tempPath: String
    private var fd: Int32
    private var committed = false
    public private(set) var bytesWritten = 0

    /// Opens `tempPath` (created exclusively) for a file that will become `finalPath`.
    /// Whether writes start writeback at once (for files that will be fsynced).
    private let startsWriteback: Bool

    /// `startsWriteback`: begin flushing each large write at once, so the fsync of `commit`
    /// finds little left to do; off for files that are never fsynced.
    public init(finalPath: String, tempPath: String, startsWriteback: Bool = true) throws {
        self.finalPath = finalPath
        self.tempPath = tempPath
        self.startsWriteback = startsWriteback
        fd = open(tempPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StoreError.io(path: tempPath, operation: "create", errno: errno) }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.io(path: tempPath, operation: "write", errno: errno)
            }
            offset += n
        }
        // Start writeback of what was just written, so the final fsync finds little left
        // to flush instead of the whole file.
        if startsWriteback && bytes.count >= 1 << 20 {
            _ = kvstore_start_writeback(fd, Int64(bytesWritten), Int64(bytes.count))
        }
        bytesWritten += bytes.count
    }

    /// Writes `bytes` at `offset` (pwrite), leaving the sequential position alone; safe to
    /// call from several threads for disjoint ranges. Does not count toward `bytesWritten`.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.io(path: tempPath, operation: "write", errno: errno)
            }
            done += n
        }
    }

    /// Writes `pieces` one after another from `offset` (pwritev), as `write(_:at:)` writes one
    /// buffer: a layer held in several buffers reaches the file without being copied into one.
    public func write(gathering pieces: [UnsafeRawBufferPointer], at offset: Int) throws {
        var vectors = pieces.filter { $0.count > 0 }.map {
            iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count)
        }
        var at = offset, first = 0
        while first < vectors.count {
            let count = Int32(min(vectors.count - first, 1024))  // IOV_MAX on Linux
            let n = vectors.withUnsafeBufferPointer { pwritev(fd, $0.baseAddress! + first, count, off_t(at)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.io(path: tempPath, operation: "write", errno: errno)
            }
            guard n > 0 else { throw StoreError.io(path: tempPath, operation: "write (no progress)", errno: EIO) }
            at += n
            var left = n
            while left > 0 {  // skip what went out; a piece cut short resumes where it stopped
                if left >= vectors[first].iov_len { left -= vectors[first].iov_len; first += 1; continue }
                vectors[first].iov_base += left
                vectors[first].iov_len -= left
                left = 0
            }
        }
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { (b) in try write(b) }
    }

    /// Makes the file durable under `finalPath`, creating its directory if needed.
    public func commit(to finalPath: String, durable: Bool = true) throws {
        self.finalPath = finalPath
        try FileSystem.makeDirectories(FileSystem.directory(of: finalPath))
        try commit(durable: durable)
    }

    /// Makes the file durable under its final name.
    public func commit(durable: Bool = true) throws {
        // Published now: the modification time says so, whenever the last byte was written
        // (collection keeps a blob published again after its tombstone by that time).
        futimens(fd, nil)
        if durable, fsync(fd) != 0 { throw StoreError.io(path: tempPath, operation: "fsync", errno: errno) }
        close(fd)
        fd = -1
        guard rename(tempPath, finalPath) == 0 else {
            let e = errno
            unlink(tempPath)
            throw StoreError.io(path: finalPath, operation: "rename", errno: e)
        }
        committed = true
        if durable { try FileSystem.syncDirectory(of: finalPath) }
    }

    /// Removes the temporary file.
    public func abandon() {
        if fd >= 0 { close(fd); fd = -1 }
        if !committed { unlink(tempPath) }
        committed = true
    }

    deinit { if !committed { abandon() } }
}

/// Small filesystem operations the store needs, with errors that name the path.
public enum FileSystem {
    public static func syncDirectory(of path: String) throws {
        let dir = directory(of: path)
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.io(path: dir, operation: "open directory", errno: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw StoreError.io(path: dir, operation: "fsync directory", errno: errno) }
    }

    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    public static func makeDirectories(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0, errno != EEXIST {
                throw StoreError.io(path: current, operation: "mkdir", errno: errno)
            }
        }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func size(_ path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : nil
    }

    /// Modification time in seconds since 1970.
    public static func modified(_ path: String) -> Double? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
    }

    public static func remove(_ path: String) throws {
        if unlink(path) != 0, errno != ENOENT { throw StoreError.io(path: path, operation: "unlink", errno: errno) }
    }

    /// Names in a directory, without `.` and `..`; empty when it does not exist.
    public static func list(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Reads a whole (small) file.
    public static func read(_ path: String) throws -> [UInt8] {
        let f = try MappedFile(path: path)
        return Array(f.bytes)
    }
}
