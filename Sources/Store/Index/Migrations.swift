/// The index schema, as named migrations applied in order and never edited once shipped.
/// SQLite and PostgreSQL apply the same names; PostgreSQL spells the types it needs
/// (64-bit integers, double precision, byte-wise ordering of ids).
enum Migrations {
    static func all(_ dialect: SQLDialect) -> [(name: String, sql: String)] {
        switch dialect {
        case .sqlite: sqlite
        case .postgres: postgres
        }
    }

    static let sqlite: [(name: String, sql: String)] = [
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
        // Blobs whose last row went, on a store whose blobs other hosts may still be reading
        // (docs/DESIGN.md, "Semantics across hosts"): collected once older than the grace period.
        ("0003_doomed", """
        CREATE TABLE doomed (blob TEXT PRIMARY KEY, doomed_at REAL NOT NULL);
        """),
        // The shareable prefix (KVSNAP.md): its length and `PrefixDigest` of the model and
        // its token ids, for `kvstore match`; NULL for entries whose input had no input_ids.
        ("0004_prefixes", """
        ALTER TABLE entries ADD COLUMN prefix_length INTEGER;
        ALTER TABLE entries ADD COLUMN prefix_digest TEXT;
        CREATE INDEX entries_prefix ON entries(model, prefix_digest);
        """),
        // Segmented entries (docs/design/segments.md): the segment blob holding the shared
        // prefix and its size; NULL for entries stored whole.
        ("0005_segments", """
        ALTER TABLE entries ADD COLUMN segment TEXT;
        ALTER TABLE entries ADD COLUMN segment_bytes INTEGER;
        CREATE INDEX entries_segment ON entries(segment);
        """),
        // A guided segment's source (the record's `prefix_source`), indexed: a later question
        // finds it without reading every row of its model (image tokens share their ids).
        ("0006_prefix_sources", """
        ALTER TABLE entries ADD COLUMN prefix_source TEXT;
        UPDATE entries SET prefix_source = json_extract(compression, '$.prefix_source') WHERE compression LIKE '%"prefix_source"%';
        CREATE INDEX entries_prefix_source ON entries(model, prefix_source);
        """),
        // Entries removed, by id: another blob of a removed entry (a re-pack killed between
        // publishing and swapping left it) is not adopted back (docs/DESIGN.md, "The orphan rule").
        ("0007_removed_entries", """
        CREATE TABLE removed_entries (id TEXT PRIMARY KEY, removed_at REAL NOT NULL);
        """),
        // Blobs a read found damaged (`EntryIndex.noteDamaged`): `match` passes over the
        // entries naming them, so a damaged prefix does not hide an intact copy of it.
        ("0008_damaged", """
        CREATE TABLE damaged (blob TEXT PRIMARY KEY, problem TEXT NOT NULL, found_at REAL NOT NULL);
        """),
    ]

    static let postgres: [(name: String, sql: String)] = [
        ("0001_entries", """
        CREATE TABLE entries (
            id TEXT COLLATE "C" PRIMARY KEY,
            producer_key TEXT,
            model TEXT NOT NULL,
            spans TEXT NOT NULL,
            layers BIGINT NOT NULL,
            kv_heads BIGINT NOT NULL,
            head_dim BIGINT NOT NULL,
            v_head_dim BIGINT NOT NULL,
            seq_len BIGINT NOT NULL,
            input_dtype TEXT NOT NULL,
            entries_kept BIGINT NOT NULL,
            policy TEXT NOT NULL,
            compression TEXT NOT NULL,
            fidelity TEXT,
            bytes_in BIGINT NOT NULL,
            bytes_out BIGINT NOT NULL,
            blob TEXT COLLATE "C" NOT NULL,
            checksum TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            last_accessed DOUBLE PRECISION NOT NULL,
            access_count BIGINT NOT NULL DEFAULT 0,
            pinned BIGINT NOT NULL DEFAULT 0
        );
        CREATE INDEX entries_producer_key ON entries(producer_key);
        CREATE INDEX entries_lru ON entries(pinned, last_accessed);
        CREATE INDEX entries_blob ON entries(blob);
        CREATE TABLE sources (
            source TEXT NOT NULL,
            entry_id TEXT COLLATE "C" NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
            span_index BIGINT NOT NULL,
            PRIMARY KEY (source, entry_id, span_index)
        );
        CREATE INDEX sources_entry ON sources(entry_id);
        """),
        ("0002_store_meta", """
        CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO store_meta (key, value)
            SELECT 'index_created_at', COALESCE(MIN(created_at), extract(epoch from now())::double precision)::text FROM entries;
        """),
        ("0003_doomed", """
        CREATE TABLE doomed (blob TEXT COLLATE "C" PRIMARY KEY, doomed_at DOUBLE PRECISION NOT NULL);
        """),
        ("0004_prefixes", """
        ALTER TABLE entries ADD COLUMN prefix_length BIGINT;
        ALTER TABLE entries ADD COLUMN prefix_digest TEXT;
        CREATE INDEX entries_prefix ON entries(model, prefix_digest);
        """),
        ("0005_segments", """
        ALTER TABLE entries ADD COLUMN segment TEXT COLLATE "C";
        ALTER TABLE entries ADD COLUMN segment_bytes BIGINT;
        CREATE INDEX entries_segment ON entries(segment);
        """),
        ("0006_prefix_sources", """
        ALTER TABLE entries ADD COLUMN prefix_source TEXT COLLATE "C";
        UPDATE entries SET prefix_source = compression::jsonb ->> 'prefix_source' WHERE compression LIKE '%"prefix_source"%';
        CREATE INDEX entries_prefix_source ON entries(model, prefix_source);
        """),
        ("0007_removed_entries", """
        CREATE TABLE removed_entries (id TEXT COLLATE "C" PRIMARY KEY, removed_at DOUBLE PRECISION NOT NULL);
        """),
        ("0008_damaged", """
        CREATE TABLE damaged (blob TEXT COLLATE "C" PRIMARY KEY, problem TEXT NOT NULL, found_at DOUBLE PRECISION NOT NULL);
        """),
    ]

    /// Applies what is missing. An index that is up to date is only read (WAL readers never
    /// wait for a writer), so opening a store never queues on another process's write lock:
    /// a daemon starting while an ingest holds the lock starts at once. Processes that
    /// migrate at the same moment take turns (`transactionLock`) and the second finds
    /// nothing left to do.
    /// Returns the migrations the index has that this binary does not know (a newer kvstore
    /// migrated it), sorted.
    @discardableResult
    static func apply(to db: any IndexConnection) throws -> [String] {
        let migrations = all(db.dialect)
        func applied() throws -> Set<String> {
            guard try !db.query(db.dialect.tableExists, [.text("migrations")]).isEmpty else { return [] }
            return Set(try db.query("SELECT name FROM migrations").compactMap { $0.text("name") })
        }
        let present = try applied()
        let unknown = present.subtracting(migrations.map(\.name)).sorted()
        if migrations.allSatisfy({ present.contains($0.name) }) { return unknown }
        try db.transaction {
            try db.transactionLock("migrations")
            try db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at \(db.dialect == .sqlite ? "REAL" : "DOUBLE PRECISION") NOT NULL)")
            let done = try applied()
            for (name, sql) in migrations where !done.contains(name) {
                try db.execute(sql)
                try db.query("INSERT INTO migrations (name, applied_at) VALUES (?, \(db.dialect.now))", [.text(name)])
            }
        }
        return unknown
    }
}
