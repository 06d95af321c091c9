import Store

/// What a compaction did (or, dry, would do).
public struct CompactionReport: Sendable, Codable {
    public struct Failure: Sendable, Codable {
        public var id: String
        public var problem: String
    }

    public var dryRun = false
    public var entriesBefore = 0
    public var bytesBefore = 0
    /// Ids re-packed with the cold policy, and the bytes that saved.
    public var repacked: [String] = []
    public var repackBytesSaved = 0
    /// Ids evicted (least recently fetched first), and their bytes.
    public var evicted: [String] = []
    public var evictedBytes = 0
    /// Blobs doomed past the grace period (shared stores) deleted, and their bytes.
    public var doomedRemoved = 0
    public var doomedBytes = 0
    /// Orphans deleted (damaged, or copies of entries another intact blob serves), and bytes.
    public var orphansRemoved = 0
    public var orphanBytes = 0
    /// Entries whose orphan blob was adopted (indexed from its own record) or relinked.
    public var orphansAdopted: [String] = []
    /// Orphans deleted (or, dry, to be) because they do not read back: blob name and problem.
    public var damagedOrphans: [Failure] = []
    /// Orphans kept because nothing says which entry they are (packs without entry records).
    public var orphansKept: [Failure] = []
    /// What lies under the blobs without being a blob in its place (skipped), and packs
    /// moved from a wrong fan-out folder to their own.
    public var strays: [BlobStray] = []
    public var reshelved: [String] = []
    public var temporaryFilesRemoved = 0
    public var temporaryBytes = 0
    /// Multipart uploads (S3) started more than the grace period ago and never completed,
    /// aborted: what an ingest that died mid-upload left.
    public var uploadsAborted = 0
    /// Entries left over budget because they are pinned.
    public var overBudgetPinned = false
    public var entriesAfter = 0
    public var bytesAfter = 0
    /// SQLite's `wal_checkpoint(TRUNCATE)` result: busy flag and WAL frames.
    public var checkpointBusy = 0
    public var checkpointFrames = 0
    public var verified = 0
    public var verifyFailures: [Failure] = []
    public var milliseconds = 0.0

    /// Bytes freed (or, on a shared store, doomed): evictions, re-pack savings, blobs of
    /// removed entries collected, damaged or superseded orphans, temporary files.
    public var bytesFreed: Int { evictedBytes + repackBytesSaved + doomedBytes + orphanBytes + temporaryBytes }

    public init() {}
}
