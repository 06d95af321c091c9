/// The queries compaction needs: LRU order, cold entries, blob references, maintenance.
extension EntryIndex {
    /// Unpinned entries, least recently fetched first (the `entries_lru` index).
    public func leastRecentlyUsed() throws -> [EntryRecord] {
        try db.query("SELECT * FROM entries WHERE pinned = 0 ORDER BY last_accessed, created_at").map(EntryRecord.init(row:))
    }

    /// Unpinned entries not fetched since `time` whose policy is not `policy`.
    public func cold(before time: Double, notPolicy policy: String) throws -> [EntryRecord] {
        try db.query("SELECT * FROM entries WHERE pinned = 0 AND last_accessed < ? AND policy <> ? ORDER BY last_accessed",
                     [.double(time), .text(policy)]).map(EntryRecord.init(row:))
    }

    /// Bytes of every entry's blob, as indexed.
    public func storedBytes() throws -> Int {
        try db.query("SELECT COALESCE(SUM(bytes_out), 0) AS n FROM entries").first?.int("n") ?? 0
    }

    /// True when some row names `blob`.
    public func isReferenced(blob: String) throws -> Bool {
        !(try db.query("SELECT 1 FROM entries WHERE blob = ? LIMIT 1", [.text(blob)])).isEmpty
    }

    /// `PRAGMA wal_checkpoint(TRUNCATE)`: copies the WAL into the database and empties it.
    /// Returns SQLite's (busy, log frames, checkpointed frames); busy = 1 when a reader kept
    /// it from finishing (harmless; the next run finishes it).
    public func checkpoint() throws -> (busy: Int, log: Int, checkpointed: Int) {
        let row = try db.query("PRAGMA wal_checkpoint(TRUNCATE)").first
        return (row?.int("busy") ?? 0, row?.int("log") ?? 0, row?.int("checkpointed") ?? 0)
    }

    /// `PRAGMA optimize`: refreshes the query planner's statistics where they are stale.
    public func optimize() throws {
        try db.execute("PRAGMA optimize")
    }

    /// When this index file began (seconds since the epoch): see migration 0002.
    public func createdAt() throws -> Double {
        let row = try db.query("SELECT value FROM store_meta WHERE key = 'index_created_at'").first
        return row?.text("value").flatMap(Double.init) ?? row?.double("value") ?? 0
    }

    /// Number of entries.
    public func count() throws -> Int {
        try db.query("SELECT COUNT(*) AS n FROM entries").first?.int("n") ?? 0
    }

    /// After a rebuild: the index began with its oldest entry (or now, when it has none).
    public func resetCreatedAtToOldestEntry() throws {
        try db.query("""
            UPDATE store_meta SET value = (SELECT COALESCE(MIN(created_at), (julianday('now') - 2440587.5) * 86400.0) FROM entries)
            WHERE key = 'index_created_at'
            """)
    }

    /// SQLite's own structural check: "ok", or what it found.
    public func quickCheck() throws -> String {
        try db.query("PRAGMA quick_check").compactMap { $0.text("quick_check") }.joined(separator: "; ")
    }
}
