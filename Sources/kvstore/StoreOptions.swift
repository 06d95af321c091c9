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

    /// The store, which must be there already (`StoreMissing`, exit 2, otherwise).
    func open() throws -> StoreRoot { try location.open() }

    /// The same, for a command that only reads: an index and blobs of two stores cannot lose
    /// anything through it (a blob that is not there is an error, every content checked), so
    /// it does not ask the blob location whose it is, and reads the index while S3 is down.
    func openForReading() throws -> StoreRoot { try location.openForReading() }

    /// The store, created when it is not there yet: for commands that write.
    func openCreating() throws -> StoreRoot { try location.openCreating() }
}

/// `--store`, `--index`, and for an s3:// store this node's cache, or all of them from
/// `--store-config FILE` (docs/DESIGN.md, "Store URL and config").
struct StoreLocation: ParsableArguments {
    @Option(name: .long, help: "Store root, or s3://BUCKET/PREFIX for blobs in S3 (default: the store $KVSTORE_CONFIG names, else $KVSTORE_HOME, else ~/.kvstore).")
    var store: String?

    @Option(name: .long, help: "The index: a directory for SQLite (one host), or postgresql://USER@HOST[:PORT]/DB (a fleet). Required with an s3:// store; default: the store root.")
    var index: String?

    @Option(name: .long, help: "With an s3:// store: this node's blob cache (default: $XDG_CACHE_HOME/kvstore, else ~/.cache/kvstore).")
    var cache: String?

    @Option(name: .long, help: "With an s3:// store: the size the blob cache is kept under, e.g. 20GB (default 10GB).")
    var cacheSize: String?

    @Option(name: .long, help: "A store config file naming the blobs, the index and the cache (docs/DESIGN.md, \"Store URL and config\"), instead of --store, --index, --cache and --cache-size (default: $KVSTORE_CONFIG when --store is not given).")
    var storeConfig: String?

    func spec() throws -> StoreSpec {
        try StoreSpec.named(store: store, index: index, cache: cache, cacheSize: cacheSize, storeConfig: storeConfig)
    }

    /// The store, which must be there already: a mistyped path creates nothing.
    func open() throws -> StoreRoot { try spec().openExisting() }

    /// The store, for a command that only reads (`StoreOptions.openForReading`).
    func openForReading() throws -> StoreRoot { try spec().openExisting(binding: .skip) }

    /// The store, created when it is not there yet (`ingest`).
    func openCreating() throws -> StoreRoot { try spec().open() }
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
