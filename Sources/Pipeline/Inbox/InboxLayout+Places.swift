import Foundation
import Store

/// Where an inbox and its done/ may be: outside the store's own folders, and done/ apart from
/// the inbox. An inbox in a blob folder moved the store's blobs to failed/ as bad inputs; done/
/// set to the inbox ingested every input again, forever.
extension InboxLayout {
    /// Throws `InboxError.misplaced` for an inbox or done/ inside (or equal to) the store's
    /// root, blob or temporary folders or its index's folder, and for done/ that is the
    /// inbox, or its failed/ or .work/ (or inside them). Paths are compared with symbolic links
    /// resolved; a folder that does not exist yet is compared as its closest existing parent.
    public func checkPlaces(store root: StoreRoot) throws {
        let base = (root.blobs.tempDirectory as NSString).deletingLastPathComponent
        let own = [base, root.path].compactMap(Self.real)
        let inboxPath = Self.real(inbox) ?? inbox
        for folder in own where Self.isInside(inboxPath, folder) {
            throw InboxError.misplaced(path: inbox, problem: "is inside the store's own folder \(folder): its blobs and index would be taken for inputs")
        }
        guard let done else { return }
        let donePath = Self.realOrParent(done)
        for folder in own where Self.isInside(donePath, folder) {
            throw InboxError.misplaced(path: done, problem: "is inside the store's own folder \(folder)")
        }
        if donePath == inboxPath {
            throw InboxError.misplaced(path: done, problem: "is the inbox: every ingested input would be ingested again")
        }
        for folder in [failed, work].map({ Self.real($0) ?? $0 }) where Self.isInside(donePath, folder) {
            throw InboxError.misplaced(path: done, problem: "is inside the inbox's own folder \(folder)")
        }
    }

    private static func isInside(_ path: String, _ folder: String) -> Bool { path == folder || path.hasPrefix(folder + "/") }

    private static func real(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// The real path of `path`, or of its closest existing parent with the rest appended.
    private static func realOrParent(_ path: String) -> String {
        if let r = real(path) { return r }
        var parent = (path as NSString).deletingLastPathComponent
        if parent.isEmpty { parent = "." }
        guard parent != path else { return path }
        return realOrParent(parent) + "/" + (path as NSString).lastPathComponent
    }
}
