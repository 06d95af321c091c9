/// The index schema, as named migrations applied in order and never edited once shipped.
enum Migrations {
    static let all: [(name: String, sql: String)] = [
        ("0001_entries", """
        CREATE TABLE entries (
            id TEXT PRIMARY KEY,            -- SHA-256 of the canonical input, hex
            producer_key TEXT,              -- kvsnap.key
            model TEXT NOT NULL,
            spans TEXT NOT NULL,            -- kvsnap.spans JSON
            layers INTEGER NOT NULL,
            kv_heads INTEGER NOT NULL,
            head_dim INTEGER NOT NULL,
            v_head_dim INTEGER NOT NULL,
            seq_len INTEGER NOT NULL,
            input_dtype TEXT NOT NULL,
            entries_kept INTEGER NOT NULL,  -- entries over all layers
            policy TEXT NOT NULL,
            compression TEXT NOT NULL,      -- compression record JSON
            fidelity TEXT,                  -- fidelity measured at ingest, JSON, when the input had probes
            bytes_in INTEGER NOT NULL,
            bytes_out INTEGER NOT NULL,
            blob TEXT NOT NULL,             -- content name of the kvpack file under blobs/
            checksum TEXT NOT NULL,         -- XXH3-128 of the blob
            created_at REAL NOT NULL,
            last_accessed REAL NOT NULL,
            access_count INTEGER NOT NULL DEFAULT 0,
            pinned INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX entries_producer_key ON entries(producer_key);
        CREATE INDEX entries_lru ON entries(pinned, last_accessed);
        CREATE TABLE sources (
            source TEXT NOT NULL,           -- a span's "source", e.g. sha256:<hex of the image>
            entry_id TEXT NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
            span_index INTEGER NOT NULL,
            PRIMARY KEY (source, entry_id, span_index)
        );
        CREATE INDEX sources_entry ON sources(entry_id);
        """),
        // When this index began: a blob older than its index cannot be an orphan a crash of
        // this index's ingests left, so compaction refuses to collect it (a lost or emptied
        // index recreated beside old blobs). An index that already had entries began with
        // its first one.
        ("0002_store_meta", """
        CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO store_meta (key, value)
            SELECT 'index_created_at', COALESCE(MIN(created_at), (julianday('now') - 2440587.5) * 86400.0) FROM entries;
        """),
    ]

    /// Applies what is missing. An index that is up to date is only read (WAL readers never
    /// wait for a writer), so opening a store never queues on another process's write lock:
    /// a daemon starting while an ingest holds the lock starts at once.
    static func apply(to db: Database) throws {
        let known = try !db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'migrations'").isEmpty
        if known {
            let applied = Set(try db.query("SELECT name FROM migrations").compactMap { $0.text("name") })
            if all.allSatisfy({ applied.contains($0.name) }) { return }
        }
        try db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        for (name, sql) in all {
            try db.transaction {
                if try db.query("SELECT 1 FROM migrations WHERE name = ?", [.text(name)]).isEmpty {
                    try db.execute(sql)
                    try db.query("INSERT INTO migrations (name, applied_at) VALUES (?, julianday('now'))", [.text(name)])
                }
            }
        }
    }
}
