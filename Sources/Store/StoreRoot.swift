import Foundation

/// The directory a store lives in, and the files it holds (docs/DESIGN.md, "Files"):
///
///     ROOT/index.sqlite          the SQLite index (plus -wal and -shm beside it)
///     ROOT/blobs/ab/<name>.kvpack one kvpack file per entry, named by its content (XXH3-128)
///     ROOT/tmp/                   files being written; anything here after a crash is garbage
///
/// Blobs are reached only through `blobs` (`BlobStore`), the index only through `index`;
/// either may live elsewhere (docs/DESIGN.md, "Shared stores").
public final class StoreRoot: @unchecked Sendable {
    /// The directory of the SQLite index, or where the index is (a redacted URL).
    public let path: String
    public let index: EntryIndex
    public let blobs: any BlobStore

    /// Blobs and index opened elsewhere; `path` names the index for messages.
    public init(index: EntryIndex, blobs: any BlobStore, path: String) {
        self.index = index; self.blobs = blobs; self.path = path
    }

    /// True when a blob that loses its last row must outlive a grace period before it is
    /// deleted: other hosts may hold its row, or read it, a moment longer.
    public var defersDeletion: Bool { index.isShared || blobs.isShared }

    /// Opens the local store at `path` (blobs and SQLite index in one directory), creating
    /// its directories and index as needed. Other stores open through `StoreSpec`.
    public convenience init(path: String) throws {
        // A store URL is not a directory: never create one named "s3:".
        if path.contains("://") {
            throw StoreError.io(path: path, operation: "open (a URL, not a directory: a shared store is opened with --store and --index)", errno: EINVAL)
        }
        let blobs = try LocalBlobStore(root: path)
        self.init(index: try EntryIndex(path: path + "/index.sqlite"), blobs: blobs, path: path)
    }

    /// The store root from `--store`, else `$KVSTORE_HOME`, else `~/.kvstore`.
    public static func defaultPath(_ explicit: String?) -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let env = ProcessInfo.processInfo.environment["KVSTORE_HOME"], !env.isEmpty { return env }
        return NSHomeDirectory() + "/.kvstore"
    }
}
