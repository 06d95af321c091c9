#if canImport(Glibc)
import Glibc
#endif

/// Asks the kernel whether some process holds a file open for writing, by trying to take
/// a read lease on it (fcntl F_SETLEASE, F_RDLCK): Linux refuses a read lease with EAGAIN
/// while any writer has the file open. The lease is given back at once.
///
/// The inbox watcher uses it to skip inputs a producer is still writing; compaction uses it
/// to skip temporary files an ingest is still writing, whatever their age.
public enum WriteProbe {
    // From <fcntl.h> (Linux): not exported by every Glibc module map.
    private static let setLease: Int32 = 1024
    private static let readLease: Int32 = 0   // F_RDLCK
    private static let noLease: Int32 = 2     // F_UNLCK

    /// True: being written. False: nobody writes it. Nil: leases are unavailable here
    /// (not the file's owner and no CAP_LEASE, or a filesystem without leases).
    public static func isOpenForWriting(_ path: String) -> Bool? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return isOpenForWriting(fd: fd)
    }

    /// The same for a file the caller opened read-only (`O_RDONLY`, no other writer of its own).
    public static func isOpenForWriting(fd: Int32) -> Bool? {
        if fcntl(fd, setLease, readLease) == 0 {
            _ = fcntl(fd, setLease, noLease)
            return false
        }
        return errno == EAGAIN ? true : nil
    }
}
