import Foundation

/// The id of the store an index belongs to (`store_meta` key `store_id`), which its blob
/// location carries too (`BlobStore.storeMarker`; `StoreRoot.checkBinding`).
extension EntryIndex {
    /// The store id this index recorded, nil before it was bound to a blob location.
    public func storeID() throws -> String? {
        try db.query("SELECT value FROM store_meta WHERE key = 'store_id'").first?.text("value")
    }

    /// The place (`BlobStore.place`) the index was bound at, nil before it was bound (or when
    /// it was bound by a version that did not record it).
    public func storeLocation() throws -> String? {
        try db.query("SELECT value FROM store_meta WHERE key = 'store_location'").first?.text("value")
    }

    /// Records `id` and `location` as this index's store id and place unless they are recorded
    /// already (another node bound it first); returns what is recorded.
    public func claimStore(id: String, location: String) throws -> (id: String, location: String) {
        try db.transaction {
            try db.query("INSERT INTO store_meta (key, value) VALUES ('store_id', ?) ON CONFLICT (key) DO NOTHING", [.text(id)])
            try db.query("INSERT INTO store_meta (key, value) VALUES ('store_location', ?) ON CONFLICT (key) DO NOTHING", [.text(location)])
            return (try storeID() ?? id, try storeLocation() ?? location)
        }
    }

    /// Up to `limit` blob names the index's rows name, for a check that a blob location holds
    /// this index's blobs.
    public func someBlobs(limit: Int) throws -> [String] {
        try db.query("SELECT blob FROM entries ORDER BY created_at DESC LIMIT ?", [.int(limit)]).compactMap { $0.text("blob") }
    }
}
