import Foundation
import SharedStore
import Store

/// Whether a store is there before a command opens it. Only commands that write create a
/// store (`ingest`, `watch`, `serve` with writing enabled, `migrate --to`); every other one
/// refuses a store that is not there (exit 2), so a mistyped `--store` creates nothing.
extension StoreSpec {
    /// A local store is there once it has an index file or a `blobs/` folder (a lost index
    /// leaves the blobs, which `repair` indexes again). Blobs in S3 are a shared store: the
    /// first process to open it creates its tables, as before.
    var isPresent: Bool {
        guard case .directory(let root) = blobs else { return true }
        if let file = sqliteIndexFile, FileSystem.exists(file) { return true }
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: root + "/blobs", isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// Opens a store that must already be there.
    func openExisting(binding: Binding = .check) throws -> StoreRoot {
        try requirePresent()
        return try open(binding: binding)
    }

    func requirePresent() throws {
        guard isPresent else { throw StoreMissing(store: description) }
    }
}

/// A command that only reads (or tidies) named a store that is not there (exit code 2).
struct StoreMissing: Error, CustomStringConvertible {
    var store: String

    var description: String {
        "no store at \(store): nothing was created (a store is created by ingest, watch, serve or migrate --to; check --store, --store-config, $KVSTORE_CONFIG and $KVSTORE_HOME)"
    }
}
