import Foundation
import Store

/// Where fetched bytes go: a file published atomically when complete, or standard output.
public final class OutputSink: FetchSink {
    private let file: AtomicFile?
    private let destination: String?

    /// `path` nil or `-` means standard output.
    public init(path: String?) throws {
        if let path, path != "-" {
            destination = path
            file = try AtomicFile(finalPath: path, tempPath: "\(path).\(getpid()).tmp", startsWriteback: false)
        } else {
            destination = nil
            file = nil
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        if let file { try file.write(bytes); return }
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(1, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.io(path: "<stdout>", operation: "write", errno: errno)
            }
            offset += n
        }
    }

    /// True when `write(_:at:)` works: a file, not a stream.
    public var isPositional: Bool { file != nil }

    /// Writes at a byte offset of the output file (several threads may write disjoint ranges).
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        guard let file else { preconditionFailure("positional write to standard output") }
        try file.write(bytes, at: offset)
    }

    /// Publishes the file under its name (no fsync: a fetched copy can always be fetched again).
    public func finish() throws {
        try file?.commit(durable: false)
    }

    /// Removes a partly written file.
    public func abandon() { file?.abandon() }
}
