import Foundation
import Store

/// A claimed input, opened for its ingest.
///
/// The file is opened in the work folder's descriptor without following a link, and the
/// ingest reads it through `/proc/self/fd/N`: exactly the file that was claimed, whatever
/// the work folder's path leads to by then. Anything but a regular file (a symbolic link,
/// a FIFO, a device) is refused without being opened, so reading it can have no effect
/// and nothing outside the inbox is ever read.
final class ClaimedInput {
    /// The claimed file is no longer in the work folder.
    enum Missing: Error { case missing }

    /// The path the ingest opens.
    let path: String
    private let fd: Int32

    init(_ name: String, in folder: InboxFolder) throws {
        let display = folder.path + "/" + name
        switch folder.kind(of: name) {
        case .file: break
        case .missing: throw Missing.missing
        case .link: throw InboxError.notAnInput(path: display, is: "a symbolic link")
        case .folder: throw InboxError.notAnInput(path: display, is: "a folder")
        case .other: throw InboxError.notAnInput(path: display, is: "not a regular file (a FIFO, socket or device)")
        }
        fd = folder.openEntry(name, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else {
            if errno == ENOENT { throw Missing.missing }
            throw StoreError.io(path: display, operation: "open", errno: errno)
        }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw InboxError.notAnInput(path: display, is: "not a regular file")
        }
        path = Self.procAvailable ? "/proc/self/fd/\(fd)" : display
    }

    deinit { close(fd) }

    private static let procAvailable = access("/proc/self/fd", F_OK) == 0
}
