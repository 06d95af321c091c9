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

    public func attributes(_ name: String) throws -> BlobAttributes? {
        let path = location(name)
        guard let bytes = FileSystem.size(path), let modified = FileSystem.modified(path) else { return nil }
        return BlobAttributes(bytes: bytes, modified: modified)
    }

    public func names() throws -> [String] {
        FileSystem.list(root + "/blobs").flatMap { dir in
            FileSystem.list("\(root)/blobs/\(dir)").filter { $0.hasSuffix(".kvpack") }.map { String($0.dropLast(7)) }
        }
    }

    public func delete(_ name: String) throws { try FileSystem.remove(location(name)) }
}
