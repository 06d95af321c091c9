import Foundation

/// The directory a store lives in, and the files it holds (docs/DESIGN.md, "Files"):
///
///     ROOT/index.sqlite          the SQLite index (plus -wal and -shm beside it)
///     ROOT/blobs/ab/<name>.kvpack one kvpack file per entry, named by its content (XXH3-128)
///     ROOT/tmp/                   files being written; anything here after a crash is garbage
public final class StoreRoot: @unchecked Sendable {
    public let path: String
    public let index: EntryIndex

    /// Opens the store at `path`, creating its directories and index as needed.
    public init(path: String) throws {
        self.path = path
        try FileSystem.makeDirectories(path + "/blobs")
        try FileSystem.makeDirectories(path + "/tmp")
        index = try EntryIndex(path: path + "/index.sqlite")
    }

    /// The store root from `--store`, else `$KVSTORE_HOME`, else `~/.kvstore`.
    public static func defaultPath(_ explicit: String?) -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let env = ProcessInfo.processInfo.environment["KVSTORE_HOME"], !env.isEmpty { return env }
        return NSHomeDirectory() + "/.kvstore"
    }

    public var tempDirectory: String { path + "/tmp" }

    public func blobPath(_ name: String) -> String {
        "\(path)/blobs/\(name.prefix(2))/\(name).kvpack"
    }

    /// A new temporary file for a blob; its final name is set when its content is known.
    public func newTempFile(suffix: String = ".kvpack") throws -> AtomicFile {
        let name = "\(tempDirectory)/\(UUID().uuidString.lowercased())\(suffix).tmp"
        return try AtomicFile(finalPath: name, tempPath: name)
    }

    /// Every blob file present, by content name.
    public func blobNames() -> [String] {
        FileSystem.list(path + "/blobs").flatMap { dir in
            FileSystem.list("\(path)/blobs/\(dir)").filter { $0.hasSuffix(".kvpack") }.map { String($0.dropLast(7)) }
        }
    }
}
