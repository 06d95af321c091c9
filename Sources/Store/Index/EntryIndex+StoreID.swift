import Foundation

/// The id of the store an index belongs to (`store_meta` key `store_id`), which its blob
/// location carries too (`BlobStore.storeMarker`; `StoreRoot.checkBinding`).
extension EntryIndex {
    /// The store id this index recorded, nil before it was bound to a blob location.
    public func storeID() throws -> String? {
        try db.query("SELECT value FROM store_meta WHERE key = 'store_id'").first?.text("value")
    }

    /// Records `id` as this index's store id unless one is recorded already (another node
    /// bound it first); returns the id recorded.
    public func claimStoreID(_ id: String) throws -> String {
        try db.transaction {
            try db.query("INSERT INTO store_meta (key, value) VALUES ('store_id', ?) ON CONFLICT (key) DO NOTHING", [.text(id)])
            return try storeID() ?? id
        }
    }

    /// Up to `limit` blob names the index's rows name, for a check that a blob location holds
    /// this index's blobs.
    public func someBlobs(limit: Int) throws -> [String] {
        try db.query("SELECT blob FROM entries ORDER BY created_at DESC LIMIT ?", [.int(limit)]).compactMap { $0.text("blob") }
    }
}
