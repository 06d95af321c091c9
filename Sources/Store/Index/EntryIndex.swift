import Foundation

/// The index of stored entries and the image sources they hold, in SQLite (one host) or
/// PostgreSQL (a fleet), through one `IndexConnection`.
///
/// A row is inserted only after its blob is durable, and deleted before its blob is
/// unlinked, so every row names an existing blob unless the disk itself lost it.
public final class EntryIndex: @unchecked Sendable {
    public let db: any IndexConnection
    /// Fetches not yet written (see `touch`).
    private var accesses: AccessBatch
    /// Migrations the index has that this binary does not know: a newer kvstore writes it.
    public let newerMigrations: [String]

    /// The SQLite index at `path`.
    public convenience init(path: String) throws {
        try self.init(connection: try Database(path: path))
    }

    /// The index behind `connection`, migrated to the current schema. Accesses are written
    /// at once to SQLite and every `AccessBatch.sharedInterval` seconds to a shared index.
    public init(connection: any IndexConnection) throws {
        db = connection
        accesses = AccessBatch(interval: connection.dialect == .sqlite ? 0 : AccessBatch.sharedInterval)
        newerMigrations = try Migrations.apply(to: db)
    }

    /// Throws unless this binary knows every migration of the index. What deletes or rebuilds
    /// (compaction, repair) must read the store as the newest writer does: a binary from
    /// before segments would take a segmented entry's part for damage and delete it.
    /// `location` names the index in the error (`StoreRoot.path`).
    public func requireKnownSchema(for operation: String, index location: String) throws {
        guard !newerMigrations.isEmpty else { return }
        throw StoreError.io(path: location, operation: "\(operation) (the index was migrated by a newer kvstore: \(newerMigrations.joined(separator: ", ")); "
                            + "run \(operation) with that version)", errno: EPERM)
    }

    deinit { try? flushAccesses() }

    /// Seconds between writes of a shared index's access statistics.
    public static let sharedAccessInterval = AccessBatch.sharedInterval

    /// True when other hosts share this index (PostgreSQL).
    public var isShared: Bool { db.dialect != .sqlite }

    /// Inserts an entry and its sources; returns false (and changes nothing) when an entry
    /// with the same id already exists.
    ///
    /// With `blobs`, the record's blob is checked to exist there while the write lock is held: blobs are
    /// only ever unlinked under that lock after finding no row that names them
    /// (`StoreRoot.collectBlob`), so a blob present here stays until its row is removed. If
    /// a concurrent collection took it, nothing is inserted and the ingest is retried
    /// (EAGAIN, a transient error).
    ///
    /// With `adopting` (an orphan in `blobs` being adopted), nothing is inserted while the blob
    /// carries a tombstone at least as new as the file, or its entry was removed since the
    /// file was written (another blob of it, left by a re-pack killed before its swap): it was
    /// removed on purpose (docs/DESIGN.md, "The orphan rule"), and the blob is tombstoned for
    /// compaction to collect. Ages, each on its own clock, are compared, never the index's
    /// times with the blob store's; the blob's is read first (see `tombstoneAge`).
    public func insert(_ record: EntryRecord, sources: [(source: String, span: Int)], blobs: (any BlobStore)? = nil,
                       adopting: Bool = false) throws -> Bool {
        try db.transaction {
            if let blobs { try Self.checkPresent(record.blobs, in: blobs, db: db, operation: "index") }
            if adopting, let blobAge = try blobs?.attributes(record.blob)?.oldest {
                if let tombstoneAge = try tombstoneAge(of: record.blob), tombstoneAge <= blobAge { return false }
                if let removedAge = try db.query("SELECT \(db.dialect.now) - removed_at AS age FROM removed_entries WHERE id = ?",
                                                 [.text(record.id)]).first?.double("age"),
                   removedAge <= blobAge {
                    try doom(record.blob)
                    return false
                }
            }
            let placeholders = Array(repeating: "?", count: record.sqlValues.count).joined(separator: ", ")
            try db.query("INSERT INTO entries (\(EntryRecord.columns)) VALUES (\(placeholders)) ON CONFLICT DO NOTHING", record.sqlValues)
            guard db.changes == 1 else { return false }
            for s in sources {
                try db.query("INSERT INTO sources (source, entry_id, span_index) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                             [.text(s.source), .text(record.id), .int(s.span)])
            }
            for name in record.blobs { try db.query("DELETE FROM doomed WHERE blob = ?", [.text(name)]) }
            // Published (or checked, when named again) just now: whole, whatever a read found before.
            try forgetDamaged(record.blobs)
            if !adopting { try db.query("DELETE FROM removed_entries WHERE id = ?", [.text(record.id)]) }
            return true
        }
    }

    /// Forgets entries removed more than `age` seconds ago (by the index's clock): compaction
    /// settles every orphan older than its grace period at each run, so a removal this old
    /// has long been applied to the blobs that were there. Returns how many were forgotten.
    @discardableResult
    public func forgetRemovedEntries(olderThan age: Double) throws -> Int {
        try db.query("DELETE FROM removed_entries WHERE removed_at < \(db.dialect.now) - ?", [.double(age)])
        return db.changes
    }

    /// Inside a write transaction: each of `names` exists in `blobs`, each checked under its
    /// transaction lock. One collected meanwhile makes the caller retry (EAGAIN, transient).
    static func checkPresent(_ names: [String], in blobs: any BlobStore, db: any IndexConnection, operation: String) throws {
        for name in names {
            try db.transactionLock(name)
            if try blobs.attributes(name) == nil {
                throw StoreError.io(path: blobs.location(name), operation: "\(operation) (the blob was collected while being published)", errno: EAGAIN)
            }
        }
    }

    public func entry(id: String) throws -> EntryRecord? {
        try db.query("SELECT * FROM entries WHERE id = ?", [.text(id)]).first.map(EntryRecord.init(row:))
    }

    /// The entry named by a full id, a unique id prefix, or (`key: true`) a producer key.
    public func resolve(_ name: String, key: Bool = false) throws -> EntryRecord {
        if key {
            let rows = try db.query("SELECT * FROM entries WHERE producer_key = ? ORDER BY created_at DESC", [.text(name)])
            guard let row = rows.first else { throw StoreError.notFound("key \(name)") }
            return EntryRecord(row: row)
        }
        let lowered = name.lowercased()
        guard !lowered.isEmpty, lowered.allSatisfy({ $0.isHexDigit }) else {
            throw StoreError.notFound("\"\(name)\" (an id is hexadecimal; use --key for a producer key)")
        }
        let rows = try db.query("SELECT * FROM entries WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
                                [.text(lowered), .text(lowered + "g")])
        guard let first = rows.first else { throw StoreError.notFound("id \(name)") }
        if rows.count > 1 && first.text("id") != lowered {
            throw StoreError.ambiguous(prefix: name, matches: rows.compactMap { $0.text("id") })
        }
        return EntryRecord(row: first)
    }

    public func all(orderBy: String = "created_at") throws -> [EntryRecord] {
        try db.query("SELECT * FROM entries ORDER BY \(orderBy)").map(EntryRecord.init(row:))
    }

    /// Up to `limit` entries in id order after `after`, optionally only those of a model,
    /// a producer key, or holding a span with a source (a page of `GET /v1/entries`).
    public func page(after: String, limit: Int, model: String? = nil, key: String? = nil, source: String? = nil) throws -> [EntryRecord] {
        var conditions = ["id > ?"]
        var values: [SQLValue] = [.text(after)]
        if let model { conditions.append("model = ?"); values.append(.text(model)) }
        if let key { conditions.append("producer_key = ?"); values.append(.text(key)) }
        if let source { conditions.append("id IN (SELECT entry_id FROM sources WHERE source = ?)"); values.append(.text(source)) }
        values.append(.int(limit))
        return try db.query("SELECT * FROM entries WHERE \(conditions.joined(separator: " AND ")) ORDER BY id LIMIT ?", values)
            .map(EntryRecord.init(row:))
    }

    /// The newest `limit` entries whose producer key, model, id or a source contains `text`
    /// (case-insensitive); all entries when `text` is empty.
    public func search(_ text: String, limit: Int) throws -> [EntryRecord] {
        let t = SQLValue.text(text.lowercased())
        let d = db.dialect
        return try db.query("""
            SELECT * FROM entries WHERE ? = '' OR \(d.position(of: "?", in: "lower(coalesce(producer_key, ''))")) > 0
              OR \(d.position(of: "?", in: "lower(model)")) > 0 OR \(d.position(of: "?", in: "id")) = 1
              OR id IN (SELECT entry_id FROM sources WHERE \(d.position(of: "?", in: "lower(source)")) > 0)
            ORDER BY created_at DESC LIMIT ?
            """, [t, t, t, t, t, .int(limit)]).map(EntryRecord.init(row:))
    }

    /// Entries holding a span with this source.
    public func entries(withSource source: String) throws -> [String] {
        try db.query("SELECT DISTINCT entry_id FROM sources WHERE source = ? ORDER BY entry_id", [.text(source)])
            .compactMap { $0.text("entry_id") }
    }

    /// An entry's span sources with the index of the span each belongs to, as ingest stored
    /// them: what a copy of the row (`migrate`) must carry.
    public func spanSources(of id: String) throws -> [(source: String, span: Int)] {
        try db.query("SELECT source, span_index FROM sources WHERE entry_id = ? ORDER BY span_index, source", [.text(id)])
            .compactMap { row in
                guard let source = row.text("source"), let span = row.int("span_index") else { return nil }
                return (source, span)
            }
    }

    public func sources(of id: String) throws -> [String] {
        try spanSources(of: id).map(\.source)
    }

    /// Records a fetch. Fetches are counted in memory and written together, in one
    /// statement, once the batch's interval has passed and when the index is closed: a busy
    /// node writes its statistics every few seconds, not once per fetch (LRU needs an order,
    /// not an exact count).
    public func touch(_ id: String, at time: Double = Date().timeIntervalSince1970) throws {
        accesses.record(id, at: time)
        if accesses.isDue(now: time) { try flushAccesses(now: time) }
    }

    /// Writes the fetches `touch` has counted.
    public func flushAccesses(now: Double = Date().timeIntervalSince1970) throws {
        guard let (values, rows) = accesses.pendingValues() else { return }
        try db.query("""
            UPDATE entries SET access_count = access_count + v.column2, last_accessed = v.column3
            FROM (VALUES \(Array(repeating: "(?, ?, ?)", count: rows).joined(separator: ", "))) AS v
            WHERE entries.id = v.column1
            """, values)
        accesses.written(at: now)
    }

    public func setPinned(_ id: String, _ pinned: Bool) throws {
        try db.query("UPDATE entries SET pinned = ? WHERE id = ?", [.int(pinned ? 1 : 0), .text(id)])
    }

    /// Deletes the row (and its sources) and tombstones its blobs in the same transaction
    /// (see `doom`); returns the record it held. With `idle`, only while the row is still
    /// unpinned and unfetched since compaction listed it (nil otherwise: a pin or a fetch
    /// that lands during a compaction keeps the entry, as `pin` promises).
    public func remove(_ id: String, idle: IdleCondition? = nil) throws -> EntryRecord? {
        try db.transaction {
            // The row as it was deleted: on PostgreSQL a swap committed by another host while
            // this waited for the row's lock is the version deleted, and its blobs (not the
            // ones read before) are the ones to tombstone, or they would be adopted back.
            guard let row = try db.query("DELETE FROM entries WHERE id = ?" + (idle?.sql ?? "") + " RETURNING *",
                                         [.text(id)] + (idle?.values ?? [])).first else { return nil }
            let record = EntryRecord(row: row)
            // A segment other rows still name stays: collection forgets its tombstone.
            for name in record.blobs { try self.doom(name) }
            // And the entry itself: a blob of it the row did not name is not adopted back.
            try db.query("""
                INSERT INTO removed_entries (id, removed_at) VALUES (?, \(db.dialect.now))
                ON CONFLICT (id) DO UPDATE SET removed_at = excluded.removed_at
                """, [.text(id)])
            return record
        }
    }

    /// Points an entry at a re-packed blob, only if it still names `oldBlob` (compaction's swap).
    /// With `blobs`, the record's new blob must exist there while the lock is held (see `insert`).
    /// The old blob is tombstoned in the same transaction when the swap happens.
    /// With `idle`, only while the row is still unpinned and unfetched since it was listed
    /// (compaction's cold re-pack).
    public func replaceBlob(id: String, oldBlob: String, with record: EntryRecord, blobs: (any BlobStore)? = nil,
                            idle: IdleCondition? = nil) throws -> Bool {
        try db.transaction {
            if let blobs { try Self.checkPresent(record.blobs, in: blobs, db: db, operation: "swap") }
            let condition = idle?.sql ?? "", values = idle?.values ?? []
            let oldSegment = try db.query("SELECT segment FROM entries WHERE id = ? AND blob = ?" + condition,
                                          [.text(id), .text(oldBlob)] + values).first?.text("segment")
            try db.query("""
                UPDATE entries SET blob = ?, checksum = ?, bytes_out = ?, policy = ?, compression = ?, entries_kept = ?, fidelity = ?,
                    segment = ?, segment_bytes = ?, prefix_source = ?
                WHERE id = ? AND blob = ?\(condition)
                """, [.text(record.blob), .text(record.checksum), .int(record.bytesOut), .text(record.policy),
                      .text(record.compression), .int(record.entriesKept), record.fidelity.map(SQLValue.text) ?? .null,
                      record.segment.map(SQLValue.text) ?? .null, record.segmentBytes.map(SQLValue.int) ?? .null,
                      record.prefixSource.map(SQLValue.text) ?? .null, .text(id), .text(oldBlob)] + values)
            guard db.changes == 1 else { return false }
            for name in record.blobs { try db.query("DELETE FROM doomed WHERE blob = ?", [.text(name)]) }
            try forgetDamaged(record.blobs)
            if oldBlob != record.blob { try self.doom(oldBlob) }
            if let oldSegment, oldSegment != record.segment { try self.doom(oldSegment) }
            return true
        }
    }

    /// Blob names some row refers to, as its own blob or as its segment.
    public func referencedBlobs() throws -> Set<String> {
        Set(try db.query("SELECT blob FROM entries UNION SELECT segment FROM entries WHERE segment IS NOT NULL")
            .compactMap { $0.text("blob") })
    }
}

/// Compaction acts on a row it listed as unpinned and idle only while it still is: a pin or a
/// fetch that lands meanwhile keeps the entry as it is.
public struct IdleCondition: Sendable {
    /// The row's `last_accessed` when it was listed.
    public let lastAccessed: Double
    public init(lastAccessed: Double) { self.lastAccessed = lastAccessed }

    var sql: String { " AND pinned = 0 AND last_accessed <= ?" }
    var values: [SQLValue] { [.double(lastAccessed)] }
}
