#if canImport(Glibc)
import Glibc
#endif

/// A Linux inotify watch on one directory for files that were closed after writing or
/// moved in (IN_CLOSE_WRITE | IN_MOVED_TO): the two ways a producer finishes a file.
///
/// Only names of entries directly in the directory are reported; nothing is recursive.
final class Inotify {
    private let fd: Int32

    /// Nil where inotify is unavailable (not Linux, no inotify instances left, a
    /// filesystem that does not support it): the caller then polls.
    init?(directory: String) {
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { return nil }
        guard inotify_add_watch(fd, directory, UInt32(IN_CLOSE_WRITE | IN_MOVED_TO)) >= 0 else {
            close(fd)
            return nil
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Waits up to `timeout` seconds for events; returns the names they concern (and
    /// whether the event was a rename into the directory), and `overflow` when the kernel
    /// dropped events (the caller should rescan).
    func wait(timeout: Double) -> (names: [(name: String, movedIn: Bool)], overflow: Bool) {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&p, 1, Int32(max(0, timeout * 1000)))
        guard ready > 0 else { return ([], false) }
        var names: [(name: String, movedIn: Bool)] = []
        var overflow = false
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { break }
            buffer.withUnsafeBytes { b in
                var offset = 0
                while offset + 16 <= n {
                    let event = b.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    if event.mask & UInt32(IN_Q_OVERFLOW) != 0 { overflow = true }
                    if event.len > 0 {
                        let start = offset + 16, end = min(n, start + Int(event.len))
                        let bytes = b[start..<end].prefix { $0 != 0 }
                        names.append((String(decoding: bytes, as: UTF8.self), event.mask & UInt32(IN_MOVED_TO) != 0))
                    }
                    offset += 16 + Int(event.len)
                }
            }
        }
        return (names, overflow)
    }
}
