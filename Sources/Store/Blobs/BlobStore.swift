import Foundation

/// Where a store keeps its pack files: content-addressed, immutable, each named by the
/// XXH3-128 of its bytes (docs/DESIGN.md, "Shared stores").
///
/// Packs are written to a local temporary file and published from it, and read through a
/// local file that `PackReader` maps, so everything above this protocol (ingest, fetch,
/// verify, repair, compaction, `serve`) is the same whatever holds the blobs.
public protocol BlobStore: Sendable {
    /// Local directory for files being written: packs before they are published, entries
    /// read back for re-packing. Anything left here after a crash is garbage.
    var tempDirectory: String { get }

    /// A new temporary file for a blob; its final name is set when its content is known.
    func newTempFile() throws -> AtomicFile

    /// Makes the finished `temp` durable as blob `name`, and returns a local file that
    /// holds it. A row may name the blob once this returns.
    func publish(_ temp: AtomicFile, as name: String) throws -> String

    /// A local file holding blob `name`, for a reader to open. A missing blob is
    /// `StoreError.io` with ENOENT, here or when the file is opened.
    func readablePath(_ name: String) throws -> String

    /// Where blob `name` lives, for messages and for people: a path or a URL.
    func location(_ name: String) -> String

    /// The blob's size and last modification, or nil when it is absent.
    func attributes(_ name: String) throws -> BlobAttributes?

    /// Every blob present, by name.
    func names() throws -> [String]

    /// Every blob present with its size and last modification: one LIST on S3 instead of a
    /// HEAD per blob.
    func inventory() throws -> [String: BlobAttributes]

    /// Deletes blob `name`; callers decide when that is safe (`StoreRoot.collectBlob`).
    func delete(_ name: String) throws

    /// Forgets this node's copy of blob `name`, if it keeps one apart from the blob itself (an
    /// object store's cache), so the next read fetches the blob itself (`verify`).
    func dropLocalCopy(_ name: String)

    /// The id of the store these blobs belong to (`StoreRoot.checkBinding`), nil when the
    /// location holds no marker.
    func storeMarker() throws -> String?

    /// Marks the location as holding the blobs of store `id`, durably.
    func writeStoreMarker(_ id: String) throws

    /// The place these blobs are, as an index records it when it is bound to them: the bucket
    /// and prefix of an object store, the real path of a folder.
    var place: String { get }

    /// True when other hosts read these blobs (an object store): a blob losing its last row
    /// is then doomed and deleted only after a grace period, never at once.
    var isShared: Bool { get }

    /// Aborts uploads that were started more than `minimumAge` seconds ago and never
    /// finished (an S3 multipart upload whose process died), for compaction; returns how
    /// many were (with `dryRun`, would be) aborted. A store whose writes cannot be left
    /// half-done has none.
    func abortStaleUploads(minimumAge: Double, dryRun: Bool) throws -> Int

    /// What lies among the blobs without being one in its place (see `BlobStray`); an
    /// object store holds objects only, and has none.
    func strays() throws -> [BlobStray]

    /// Moves a stray pack (`BlobStray.name` set) to its blob's place unless something is
    /// there; true when moved.
    func reshelve(_ stray: BlobStray) throws -> Bool
}

/// Something under the blobs that is not a blob in its place: reported by `verify`, `repair`
/// and `compact`, never opened blocking and never fatal.
public struct BlobStray: Sendable, Codable, Equatable {
    /// Where it is.
    public var path: String
    /// What is wrong with it.
    public var problem: String
    /// The blob name, when it is a pack file in the wrong folder (`reshelve` moves it home).
    public var name: String?

    public init(path: String, problem: String, name: String? = nil) {
        self.path = path; self.problem = problem; self.name = name
    }
}

extension BlobStore {
    public var isShared: Bool { false }

    /// A reader of blob `name`. A node cache's copy (`readablePath` of an object store) can be
    /// evicted by another process between being handed out and opened; it is then fetched
    /// again. ENOENT after that means the blob itself is gone.
    public func openPack(_ name: String) throws -> PackReader {
        for attempt in 0..<3 {
            do { return try PackReader(path: readablePath(name)) } catch StoreError.io(_, _, ENOENT) where attempt < 2 && isShared {
                continue
            }
        }
        throw StoreError.io(path: location(name), operation: "open", errno: ENOENT)
    }

    public func inventory() throws -> [String: BlobAttributes] {
        var found: [String: BlobAttributes] = [:]
        for name in try names() { found[name] = try attributes(name) }
        return found
    }
    public func abortStaleUploads(minimumAge: Double, dryRun: Bool) throws -> Int { 0 }
    public func dropLocalCopy(_ name: String) {}
    public func strays() throws -> [BlobStray] { [] }
    public func reshelve(_ stray: BlobStray) throws -> Bool { false }
}

/// What a blob store knows of one blob without reading it.
public struct BlobAttributes: Sendable, Equatable {
    public var bytes: Int
    /// Seconds since 1970, by the clock of whatever holds the blob.
    public var modified: Double
    /// Seconds from `modified` to when these attributes were read, both by the clock of
    /// whatever holds the blob (an object store's own `Date`), so that no node's clock enters
    /// a blob's age. Every decision by time compares ages, each taken on its own clock: a
    /// blob's here, a tombstone's on the index's (docs/design/shared.md, "Clocks").
    public var age: Double
    /// How far `age` may be off: the clock's resolution (an object store's Date and
    /// Last-Modified count whole seconds).
    public var resolution: Double

    public init(bytes: Int, modified: Double, age: Double, resolution: Double = 0) {
        self.bytes = bytes; self.modified = modified; self.age = age; self.resolution = resolution
    }

    /// The most the blob's age may be: a blob is taken for one published after a tombstone
    /// only when it is younger than the tombstone even so (as when times were compared, a blob
    /// published within the same second as its removal counts as the removed one).
    public var oldest: Double { age + resolution }
}
