import Foundation
import Store

/// What a store is made of: where its blobs live, where its index lives, and (for blobs in
/// S3) this node's cache (docs/DESIGN.md, "Store URL and config").
///
///     PATH | file:///PATH           blobs and an SQLite index in one directory (the local store)
///     s3://BUCKET[/PREFIX]          blobs in S3; the index is named apart
///     index: DIR | postgresql://…   an SQLite index in DIR, or a PostgreSQL database
public struct StoreSpec: Sendable {
    public enum Blobs: Sendable {
        case directory(String)
        case s3(S3Location)
    }

    public enum Index: Sendable {
        /// `DIR/index.sqlite`: one host.
        case sqlite(directory: String)
        /// A PostgreSQL database: any number of hosts.
        case postgres(PostgresLocation)
    }

    public var blobs: Blobs
    public var index: Index
    /// This node's copies of S3 blobs, and the size they are kept under.
    public var cacheDirectory: String
    public var cacheCapacity: Int

    /// The default cache: `$XDG_CACHE_HOME/kvstore`, else `~/.cache/kvstore`.
    public static func defaultCacheDirectory(_ environment: [String: String]) -> String {
        (environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory() + "/.cache") + "/kvstore"
    }

    public static let defaultCacheCapacity = 10_000_000_000

    /// The store named by `--store` (else `$KVSTORE_HOME`, else `~/.kvstore`), `--index`,
    /// `--cache` and `--cache-size`.
    public init(store: String?, index: String? = nil, cache: String? = nil, cacheSize: String? = nil,
                environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let store = StoreRoot.defaultPath(store)
        if store.hasPrefix("s3://") {
            blobs = .s3(try S3Location(url: store, environment: environment))
            guard let index else { throw StoreSpecError.missingIndex(store) }
            self.index = try Self.index(index)
        } else {
            let directory = try Self.directory(store)
            blobs = .directory(directory)
            if cache != nil || cacheSize != nil { throw StoreSpecError.cacheWithoutS3(store) }
            self.index = try index.map(Self.index) ?? .sqlite(directory: directory)
        }
        cacheDirectory = cache ?? Self.defaultCacheDirectory(environment)
        cacheCapacity = Self.defaultCacheCapacity
        if let cacheSize {
            guard let size = ByteSize(parsing: cacheSize)?.bytes, size > 0 else { throw StoreSpecError.badCacheSize(cacheSize) }
            cacheCapacity = size
        }
    }

    /// `PATH` or `file:///PATH`; any other URL is refused, never taken for a directory.
    static func directory(_ text: String) throws -> String {
        if text.hasPrefix("file://") {
            let path = String(text.dropFirst(7))
            guard path.hasPrefix("/") else { throw StoreSpecError.badURL(text, problem: "a file URL is file:///ABSOLUTE/PATH") }
            return path
        }
        guard !text.contains("://") else {
            throw StoreSpecError.badURL(text, problem: "a store is a directory, file:///PATH or s3://BUCKET[/PREFIX]")
        }
        return text
    }

    static func index(_ text: String) throws -> Index {
        if text.hasPrefix("postgresql://") || text.hasPrefix("postgres://") { return .postgres(try PostgresLocation(url: text)) }
        return .sqlite(directory: try directory(text))
    }

    /// Where the store is, for messages: the blob location, and the index when apart.
    public var description: String {
        let blobText: String
        switch blobs {
        case .directory(let path): blobText = path
        case .s3(let location): blobText = location.url(ofKey: location.prefix)
        }
        switch index {
        case .sqlite(let directory): return directory == blobText ? blobText : "\(blobText) (index \(directory))"
        case .postgres(let location): return "\(blobText) (index \(location.redacted))"
        }
    }
}

/// A store description kvstore cannot use (CLI exit code 1).
public enum StoreSpecError: Error, CustomStringConvertible, Equatable {
    case badURL(String, problem: String)
    case missingIndex(String)
    case cacheWithoutS3(String)
    case badCacheSize(String)

    public var description: String {
        switch self {
        case .badURL(let url, let problem): "store \(url): \(problem)"
        case .missingIndex(let url): "--store \(url) needs --index: a directory for an SQLite index (one host) or postgresql://USER@HOST/DB (a fleet)"
        case .cacheWithoutS3(let store): "--cache and --cache-size apply to s3:// stores only, not \(store)"
        case .badCacheSize(let text): "cache size \"\(text)\": expected a size such as 500MB or 20GB"
        }
    }
}

extension StoreSpec {
    /// The SQLite index file, when the index is SQLite.
    public var sqliteIndexFile: String? {
        if case .sqlite(let directory) = index { return directory + "/index.sqlite" }
        return nil
    }

    /// How `open` checks that an index and blobs living apart belong to one store
    /// (`StoreRoot.checkBinding`).
    public enum Binding: Sendable {
        /// Refuse two stores' parts; bind them on first use.
        case check
        /// `repair`: an index rebuilt from the blobs takes their store's id.
        case adopt
        /// A dry run, which writes nothing: not checked.
        case skip
    }

    /// Opens the store: its blob store (and node cache) and its index, migrated, with the
    /// index and the blobs checked to belong to one store when they live apart.
    public func open(binding: Binding = .check) throws -> StoreRoot {
        let root = try openUnchecked()
        if case .directory(let blobRoot) = blobs, case .sqlite(let directory) = index,
           URL(fileURLWithPath: blobRoot).standardizedFileURL == URL(fileURLWithPath: directory).standardizedFileURL {
            return root  // one folder: the index lives with its blobs
        }
        switch binding {
        case .check: try root.checkBinding()
        case .adopt: try root.checkBinding(adopting: true)
        case .skip: break
        }
        return root
    }

    private func openUnchecked() throws -> StoreRoot {
        let blobStore: any BlobStore
        switch blobs {
        case .directory(let path): blobStore = try LocalBlobStore(root: path)
        case .s3(let location):
            blobStore = S3BlobStore(client: S3Client(location: location),
                                    cache: try BlobCache(directory: cacheDirectory, capacity: cacheCapacity))
        }
        switch index {
        case .sqlite(let directory):
            try FileSystem.makeDirectories(directory)
            return StoreRoot(index: try EntryIndex(path: directory + "/index.sqlite"), blobs: blobStore, path: directory)
        case .postgres(let location):
            return StoreRoot(index: try EntryIndex(connection: try PostgresIndexConnection(location: location)),
                             blobs: blobStore, path: location.redacted)
        }
    }
}
