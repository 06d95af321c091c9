import Foundation
import Store

/// A node's copies of shared blobs (docs/DESIGN.md, "The local cache"):
///
///     DIR/blobs/ab/<name>.kvpack  a copy whose content was checked against its name
///     DIR/tmp/                    downloads and packs being written; garbage after a crash
///
/// Blobs are immutable and named by content, so a copy is never stale. A copy enters only
/// once its XXH3-128 matched its name, and is checked again each time it is handed out; a
/// damaged copy is deleted, never served. Copies are evicted least recently used first
/// (each use sets the file's modification time) once the cache holds more than `capacity`.
public final class BlobCache: @unchecked Sendable {
    public let directory: String
    public let capacity: Int

    public init(directory: String, capacity: Int) throws {
        self.directory = directory
        self.capacity = capacity
        try FileSystem.makeDirectories(directory + "/blobs")
        try FileSystem.makeDirectories(directory + "/tmp")
    }

    public var tempDirectory: String { directory + "/tmp" }

    public func path(_ name: String) -> String { "\(directory)/blobs/\(name.prefix(2))/\(name).kvpack" }

    /// The intact copy of `name`, marked as just used; nil when there is none. A copy whose
    /// content no longer matches its name is deleted. Marked before it is checked, so that an
    /// eviction that looks at it from now on spares it (`evict`).
    public func verifiedCopy(_ name: String) -> String? {
        let path = path(name)
        guard utimes(path, nil) == 0 else { return nil }
        guard (try? Self.contentName(of: path)) == name else {
            try? FileSystem.remove(path)
            return nil
        }
        return path
    }

    /// Seconds a copy stays in use after it was last handed out: eviction spares it, since a
    /// reader in another process may be about to open it (the cache may hold more than its
    /// capacity for that long).
    public static let inUseSeconds: Double = 60

    /// Downloads `name` with `download(tempPath)`, checks its content against the name and
    /// moves it into the cache. A download whose content differs is refused as corrupt.
    public func fill(_ name: String, source: String, download: (String) throws -> Void) throws -> String {
        let temp = "\(tempDirectory)/\(UUID().uuidString.lowercased()).download.tmp"
        defer { try? FileSystem.remove(temp) }
        try download(temp)
        let content = try Self.contentName(of: temp)
        guard content == name else {
            throw StoreError.corrupt(path: source, problem: "content is \(content), its name says \(name) (damaged in the object store or on the way)")
        }
        let path = path(name)
        try FileSystem.makeDirectories(FileSystem.directory(of: path))
        guard rename(temp, path) == 0 else { throw StoreError.io(path: path, operation: "rename into the cache", errno: errno) }
        evict(keeping: name)
        return path
    }

    /// Keeps the file this node just uploaded as the copy of `name`.
    public func adopt(_ temp: AtomicFile, as name: String) throws -> String {
        let path = path(name)
        try temp.commit(to: path, durable: false)
        evict(keeping: name)
        return path
    }

    public func remove(_ name: String) { try? FileSystem.remove(path(name)) }

    /// Deletes the least recently used copies until the cache holds at most 90 % of its
    /// capacity, when it holds more than all of it. `keeping`, and every copy handed out in the
    /// last `inUseSeconds` (looked at again just before it would go: the listing is old by
    /// then), are spared: a reader may be about to open them. A copy another process has mapped
    /// stays readable until unmapped; one evicted anyway between being handed out and opened is
    /// fetched again (`BlobStore.openPack`).
    func evict(keeping: String) {
        let copies = FileSystem.list(directory + "/blobs").flatMap { dir in
            FileSystem.list("\(directory)/blobs/\(dir)").map { "\(directory)/blobs/\(dir)/\($0)" }
        }.compactMap { path -> (path: String, bytes: Int, used: Double)? in
            guard let bytes = FileSystem.size(path), let used = FileSystem.modified(path) else { return nil }
            return (path, bytes, used)
        }
        var total = copies.reduce(0) { $0 + $1.bytes }
        guard total > capacity else { return }
        let kept = path(keeping), now = Date().timeIntervalSince1970
        for copy in copies.sorted(by: { $0.used < $1.used }) where total > capacity / 10 * 9 && copy.path != kept {
            guard let used = FileSystem.modified(copy.path), now - used >= Self.inUseSeconds else { continue }
            try? FileSystem.remove(copy.path)
            total -= copy.bytes
        }
    }

    /// XXH3-128 of a file's bytes: a blob's name.
    static func contentName(of path: String) throws -> String {
        ContentDigest.name(of: try MappedFile(path: path))
    }
}
