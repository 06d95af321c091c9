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

    /// Bytes of every entry's blob and of every segment once, as indexed.
    public func storedBytes() throws -> Int {
        let own = try db.query("SELECT CAST(COALESCE(SUM(bytes_out), 0) AS BIGINT) AS n FROM entries").first?.int("n") ?? 0
        return own + (try segmentTotals().bytes)
    }

    /// Distinct segments rows name, and their bytes counted once each.
    public func segmentTotals() throws -> (count: Int, bytes: Int) {
        let row = try db.query("""
            SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(SUM(b), 0) AS BIGINT) AS bytes
            FROM (SELECT segment, MAX(segment_bytes) AS b FROM entries WHERE segment IS NOT NULL GROUP BY segment) AS s
            """).first
        return (row?.int("n") ?? 0, row?.int("bytes") ?? 0)
    }

    /// True when some row names `blob`, as its own blob or as its segment.
    public func isReferenced(blob: String) throws -> Bool {
        !(try db.query("SELECT 1 FROM entries WHERE blob = ? OR segment = ? LIMIT 1", [.text(blob), .text(blob)])).isEmpty
    }

    /// Entries whose prefix lies in segment `name`.
    public func entries(inSegment name: String) throws -> [EntryRecord] {
        try db.query("SELECT * FROM entries WHERE segment = ? ORDER BY id", [.text(name)]).map(EntryRecord.init(row:))
    }

    /// `PRAGMA wal_checkpoint(TRUNCATE)`: copies the WAL into the database and empties it.
    /// Returns SQLite's (busy, log frames, checkpointed frames); busy = 1 when a reader kept
    /// it from finishing (harmless; the next run finishes it). PostgreSQL checkpoints itself.
    public func checkpoint() throws -> (busy: Int, log: Int, checkpointed: Int) {
        guard db.dialect == .sqlite else { return (0, 0, 0) }
        let row = try db.query("PRAGMA wal_checkpoint(TRUNCATE)").first
        return (row?.int("busy") ?? 0, row?.int("log") ?? 0, row?.int("checkpointed") ?? 0)
    }

    /// Refreshes the query planner's statistics where they are stale (`PRAGMA optimize`;
    /// PostgreSQL: `ANALYZE`, which neither blocks nor waits for readers and writers).
    ///
    /// Inside a write transaction: `PRAGMA optimize` starts reading and may then write its
    /// statistics, and SQLite refuses that upgrade at once (no busy wait) if another process
    /// wrote in between; taking the write lock first waits its turn like any writer.
    public func optimize() throws {
        try db.transaction {
            try db.execute(db.dialect == .sqlite ? "PRAGMA optimize" : "ANALYZE entries, sources, doomed")
        }
    }

    /// When this index file began (seconds since the epoch): see migration 0002.
    public func createdAt() throws -> Double {
        let row = try db.query("SELECT value FROM store_meta WHERE key = 'index_created_at'").first
        return row?.text("value").flatMap(Double.init) ?? row?.double("value") ?? 0
    }

    /// Bytes the index takes where it lives: the SQLite file with its -wal and -shm, or the
    /// PostgreSQL tables with their indexes and TOAST.
    public func storageBytes() throws -> Int {
        switch db.dialect {
        case .sqlite:
            return ["", "-wal", "-shm"].reduce(0) { $0 + (FileSystem.size(db.location + $1) ?? 0) }
        case .postgres:
            return try db.query("""
                SELECT CAST(pg_total_relation_size('entries') + pg_total_relation_size('sources') + pg_total_relation_size('doomed') AS BIGINT) AS n
                """).first?.int("n") ?? 0
        }
    }

    /// Number of entries.
    public func count() throws -> Int {
        try db.query("SELECT COUNT(*) AS n FROM entries").first?.int("n") ?? 0
    }

    /// After a rebuild: the index began with its oldest entry (or now, when it has none).
    public func resetCreatedAtToOldestEntry() throws {
        try db.query("""
            UPDATE store_meta SET value = (SELECT CAST(COALESCE(MIN(created_at), \(db.dialect.now)) AS TEXT) FROM entries)
            WHERE key = 'index_created_at'
            """)
    }

    /// SQLite's own structural check: "ok", or what it found. PostgreSQL guards its own pages
    /// (WAL, checksums) and is not checked from here.
    /// A table the migrations created but someone dropped counts as damage too: every query
    /// would fail on it.
    public func quickCheck() throws -> String {
        guard db.dialect == .sqlite else { return "ok" }
        let check = try db.query("PRAGMA quick_check").compactMap { $0.text("quick_check") }.joined(separator: "; ")
        guard check == "ok" else { return check }
        let missing = try ["entries", "sources", "store_meta", "doomed"].filter { try db.query(db.dialect.tableExists, [.text($0)]).isEmpty }
        return missing.isEmpty ? "ok" : "table\(missing.count > 1 ? "s" : "") \(missing.joined(separator: ", ")) missing, though the index's migrations created \(missing.count > 1 ? "them" : "it")"
    }

    /// Records that blob `name` may have lost its last row, by the index server's clock;
    /// compaction deletes it once no row names it and the grace period has passed.
    public func doom(_ name: String) throws {
        try db.query("""
            INSERT INTO doomed (blob, doomed_at) VALUES (?, \(db.dialect.now))
            ON CONFLICT (blob) DO UPDATE SET doomed_at = excluded.doomed_at
            """, [.text(name)])
    }

    /// Tombstoned blobs and how many seconds ago each was tombstoned (by the index server's
    /// clock).
    public func doomed() throws -> [(blob: String, age: Double)] {
        try db.query("SELECT blob, \(db.dialect.now) - doomed_at AS age FROM doomed ORDER BY blob").compactMap { row in
            row.text("blob").map { ($0, row.double("age") ?? 0) }
        }
    }

    /// How many seconds ago blob `name` was tombstoned (by the index server's clock), nil when
    /// it carries no tombstone. Compared with a blob's `BlobAttributes.age`, never with its
    /// modification time: the index's and the blob store's clocks need not agree. Read it after
    /// the blob's attributes, so the time between the two reads makes the tombstone look older,
    /// never the blob.
    public func tombstoneAge(of name: String) throws -> Double? {
        try db.query("SELECT \(db.dialect.now) - doomed_at AS age FROM doomed WHERE blob = ?", [.text(name)]).first?.double("age")
    }

    /// Forgets a doomed blob (collected, or named by a row again).
    public func forgetDoomed(_ name: String) throws {
        try db.query("DELETE FROM doomed WHERE blob = ?", [.text(name)])
    }

    /// Takes the store's compaction lock for as long as this index is open; false when
    /// another process holds it.
    public func tryCompactionLock() throws -> Bool { try db.tryCompactionLock() }
}
