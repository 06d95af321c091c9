import ArgumentParser
import Foundation
import LightKV
import Pipeline
import SharedStore
import Store

/// Options every store command takes.
struct StoreOptions: ParsableArguments {
    @OptionGroup var location: StoreLocation

    @Flag(name: .long, help: "Print JSON for scripts.")
    var json = false

    var store: String? { location.store }

    func open() throws -> StoreRoot { try location.open() }
}

/// `--store`, and for an s3:// store its index and this node's cache (docs/DESIGN.md,
/// "Store URL and config").
struct StoreLocation: ParsableArguments {
    @Option(name: .long, help: "Store root, or s3://BUCKET/PREFIX for blobs in S3 (default: $KVSTORE_HOME, else ~/.kvstore).")
    var store: String?

    @Option(name: .long, help: "With an s3:// store: the directory of its SQLite index.")
    var index: String?

    @Option(name: .long, help: "With an s3:// store: this node's blob cache (default: $XDG_CACHE_HOME/kvstore, else ~/.cache/kvstore).")
    var cache: String?

    @Option(name: .long, help: "With an s3:// store: the size the blob cache is kept under, e.g. 20GB.")
    var cacheSize = "10GB"

    func open() throws -> StoreRoot {
        let (path, blobs) = try resolve()
        return try StoreRoot(path: path, blobs: blobs)
    }

    /// The directory of the index, and the blob store when the blobs live elsewhere.
    func resolve() throws -> (path: String, blobs: (any BlobStore)?) {
        let store = StoreRoot.defaultPath(store)
        guard store.hasPrefix("s3://") else {
            if index != nil || cache != nil { throw ValidationError("--index and --cache apply to s3:// stores only") }
            return (store, nil)
        }
        guard let index else { throw ValidationError("--store \(store) needs --index DIR, the directory of its SQLite index") }
        guard let capacity = ByteSize(parsing: cacheSize)?.bytes, capacity > 0 else {
            throw ValidationError("--cache-size \(cacheSize): expected a size such as 500MB or 20GB")
        }
        let environment = ProcessInfo.processInfo.environment
        let directory = cache ?? (environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory() + "/.cache") + "/kvstore"
        let blobs = S3BlobStore(client: S3Client(location: try S3Location(url: store, environment: environment)),
                                cache: try BlobCache(directory: directory, capacity: capacity))
        return (index, blobs)
    }
}

/// `--policies FILE`: named policies (docs/DESIGN.md, "Policy files") that `--policy` and
/// `--cold-policy` may name.
struct PolicyFileOption: ParsableArguments {
    @Option(name: .long, help: "A policy file whose names --policy may use (docs/DESIGN.md, \"Policy files\").")
    var policies: String?

    func file() throws -> PolicyFile? {
        guard let policies else { return nil }
        return try PolicyFile.load(path: policies)
    }

    /// `text` as a name from the file, or as a policy spelling.
    func resolve(_ text: String) throws -> Policy {
        do { return try Policy.resolve(text, in: try file()) } catch let e as PolicyError { throw StoreError.badPolicy(e) }
    }
}
