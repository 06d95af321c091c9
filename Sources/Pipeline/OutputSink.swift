import Foundation
import Store

/// Where fetched bytes go: a regular file published atomically when complete, or a stream
/// (standard output, a character device, a FIFO) written in place.
///
/// Like `cp` or `curl -o`: a path naming a device or FIFO is opened and written, never
/// replaced (a root `fetch -o /dev/null` must not swap the device node for a file); a
/// symlink is followed and its target written; only a regular file (or a new name) goes
/// through a temporary file and a rename.
public final class OutputSink: FetchSink {
    private let file: AtomicFile?
    /// The stream's descriptor when not a regular file, and whether this sink opened it.
    private let stream: Int32
    private let ownsStream: Bool
    private let name: String

    /// `path` nil or `-` means standard output.
    public init(path: String?) throws {
        guard let path, path != "-" else {
            file = nil; stream = 1; ownsStream = false; name = "<stdout>"
            return
        }
        let target = try Self.resolve(path)
        name = target
        var st = stat()
        if stat(target, &st) == 0, (st.st_mode & S_IFMT) != S_IFREG {
            guard (st.st_mode & S_IFMT) != S_IFDIR else { throw StoreError.io(path: path, operation: "write output", errno: EISDIR) }
            let fd = open(target, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw StoreError.io(path: target, operation: "open for writing", errno: errno) }
            file = nil; stream = fd; ownsStream = true
        } else {
            // A name no other process uses, even one with this pid (a container's pid 1) whose
            // predecessor was killed mid-fetch and left its temporary file behind.
            let unique = "\(getpid()).\(String(UInt32.random(in: .min ... .max), radix: 16))"
            let temp = "\(target).\(unique).tmp"
            // Registered before it exists: a signal between creating and registering it left it.
            TemporaryOutputs.shared.add(temp)
            do { file = try AtomicFile(finalPath: target, tempPath: temp, startsWriteback: false) } catch {
                TemporaryOutputs.shared.remove(temp)
                throw error
            }
            stream = -1; ownsStream = false
        }
    }

    /// The path output really goes to: `path` itself, or the file its symlinks lead to.
    /// A symlink to nothing is refused rather than guessed at.
    static func resolve(_ path: String) throws -> String {
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK else { return path }
        guard let real = realpath(path, nil) else {
            throw StoreError.io(path: path, operation: "follow symlink (its target does not exist; give the target path itself)", errno: errno)
        }
        defer { free(real) }
        return String(cString: real)
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        if let file { try file.write(bytes); return }
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(stream, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.io(path: name, operation: "write", errno: errno)
            }
            offset += n
        }
    }

    /// True when `write(_:at:)` works: a regular file, not a stream.
    public var isPositional: Bool { file != nil }

    /// A regular file is published by rename in `finish`; a stream has what it was sent.
    public var publishesWhenFinished: Bool { file != nil }

    /// Writes at a byte offset of the output file (several threads may write disjoint ranges).
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        guard let file else { preconditionFailure("positional write to a stream") }
        try file.write(bytes, at: offset)
    }

    /// Writes `pieces` one after another from a byte offset, in one call.
    public func write(gathering pieces: [UnsafeRawBufferPointer], at offset: Int) throws {
        guard let file else { preconditionFailure("positional write to a stream") }
        try file.write(gathering: pieces, at: offset)
    }

    /// Publishes the file under its name (no fsync: a fetched copy can always be fetched again).
    public func finish() throws {
        guard let file else { return }
        defer { TemporaryOutputs.shared.remove(file.tempPath) }
        try file.commit(durable: false)
    }

    /// Removes a partly written file (a stream keeps what it was sent).
    public func abandon() {
        guard let file else { return }
        file.abandon()
        TemporaryOutputs.shared.remove(file.tempPath)
    }

    deinit {
        if ownsStream { close(stream) }
        if let file { TemporaryOutputs.shared.remove(file.tempPath) }
    }
}
