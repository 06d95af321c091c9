#if canImport(Glibc)
import Glibc
#endif

/// Which file, in which state: device and inode, size, and the times of the last write
/// (`mtime`, which a user may set) and of the last change (`ctime`, which only the kernel
/// sets). Two equal identities are the same file, unwritten in between, so a check of its
/// bytes made under one still holds under the other.
public struct FileIdentity: Hashable, Sendable {
    public let device: UInt64
    public let inode: UInt64
    public let size: Int
    public let modified: Int64
    public let changed: Int64

    /// The identity `fstat` gives an open file.
    public init(_ st: stat) {
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        size = Int(st.st_size)
        modified = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        changed = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
    }

    /// The identity of the open descriptor `fd`; nil when it cannot be read.
    public init?(descriptor fd: Int32) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        self.init(st)
    }

    /// Whether `other` is the same file (device and inode), whatever its state.
    public func isSameFile(as other: FileIdentity) -> Bool { device == other.device && inode == other.inode }
}
