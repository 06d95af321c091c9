#if canImport(Glibc)
import Glibc
#endif
import CMapGuard

/// A read-only memory map of a whole file, unmapped when released.
///
/// Snapshots are read through a map so a 1 GB input costs no copy: its pages are shared
/// with the page cache and dropped under memory pressure.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let bytes: UnsafeRawBufferPointer
    /// The file mapped, as it was when mapped.
    public let identity: FileIdentity

    /// Whether the file at `path` is still the one mapped, unwritten since (same inode, size,
    /// modification and change times): bytes read from the map before this returned true are
    /// the file's as it was mapped. (A write within the kernel's timestamp tick of the map may
    /// leave the times as they were.)
    public var isUnchanged: Bool { !faulted && identityUnchanged }

    /// Whether the file at `path` still has the identity it had when mapped (a read may have
    /// faulted all the same: an I/O error, not a write).
    public var identityUnchanged: Bool {
        var st = stat()
        return stat(path, &st) == 0 && FileIdentity(st) == identity
    }

    /// Whether a read past the file's end faulted since it was mapped (the file shrank under
    /// the reader): the read found zeros instead of killing the process (`CMapGuard`), and
    /// what was read is not the file's.
    public var faulted: Bool { guardSlot >= 0 && kvstore_guard_faulted(guardSlot) != 0 }

    /// This mapping's slot in the SIGBUS guard, -1 when unguarded.
    private var guardSlot: Int32 = -1

    public init(path: String) throws {
        self.path = path
        // O_NONBLOCK: a FIFO where a file was expected must not block the open forever.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw StoreError.io(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw StoreError.io(path: path, operation: "stat", errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw StoreError.corrupt(path: path, problem: "not a regular file") }
        identity = FileIdentity(st)
        let size = Int(st.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw StoreError.io(path: path, operation: "mmap", errno: errno)
        }
        madvise(p, size, MADV_SEQUENTIAL)
        bytes = UnsafeRawBufferPointer(start: p, count: size)
        guardSlot = kvstore_guard_mapping(p, size)
    }

    /// Tells the kernel the pages of `range` will not be read again (keeps peak memory at
    /// about one layer when a snapshot is streamed through).
    public func release(_ range: Range<Int>) {
        guard let base = bytes.baseAddress, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound / page) * page
        let end = range.upperBound
        madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

    deinit {
        kvstore_unguard_mapping(guardSlot)
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }
}
