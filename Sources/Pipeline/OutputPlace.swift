import Foundation
import Store

/// An output a fetch refuses to write: one of the store's own files.
public struct OutputInsideStore: Error, CustomStringConvertible {
    public let path: String
    public let folder: String
    public var description: String {
        "refusing to write \(path): it is in the store's own \(folder) (an output there would replace a blob or the index); give a path outside it"
    }
}

/// Where a fetch may write: anywhere but the store's own files (its blob folder, its
/// temporary files, its SQLite index), which an output would replace. `fetch -o` onto a
/// blob, or a symlink to one, would destroy every entry stored in it.
public enum OutputPlace {
    /// Throws `OutputInsideStore` when `path` (symlinks followed) is, or would be created
    /// in, one of `root`'s own folders or is its index. A path whose folder does not exist
    /// is left to the output itself to refuse.
    public static func check(_ path: String, store root: StoreRoot) throws {
        guard path != "-", let target = try? OutputSink.resolve(path) else { return }
        let parent = (target as NSString).deletingLastPathComponent
        guard let folder = real(parent.isEmpty ? "." : parent) else { return }
        let file = folder + "/" + (target as NSString).lastPathComponent
        let base = (root.blobs.tempDirectory as NSString).deletingLastPathComponent
        for own in [base + "/blobs", base + "/tmp"] {
            guard let own = real(own) else { continue }
            if file.hasPrefix(own + "/") { throw OutputInsideStore(path: path, folder: "folder \(own)") }
        }
        if let store = real(root.path) {
            for name in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "index.sqlite-journal"] where file == "\(store)/\(name)" {
                throw OutputInsideStore(path: path, folder: "index \(store)/index.sqlite")
            }
        }
    }

    private static func real(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}
