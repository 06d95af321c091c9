import Foundation

/// One index, one blob location (docs/design/shared.md, "One index, one blob location").
///
/// An index and its blobs may live apart (blobs in S3, the index in PostgreSQL); nothing but
/// the user's settings pairs them. A node whose `--store` names another prefix or bucket than
/// the fleet's, with the fleet's index, took every entry it was handed again for one whose
/// blob had gone, stored it in the wrong place and moved the fleet's row there, and the
/// fleet's compaction then deleted the good blob; two indexes over one location adopted and
/// then deleted each other's blobs. So the index records a store id and the location carries
/// the same id (`BlobStore.storeMarker`), and a store whose two halves disagree is not opened.
extension StoreRoot {
    /// Refuses an index and a blob location of different stores, and binds the two when the
    /// location carries no marker yet: on first use (the index records the store's id and the
    /// place it was bound at), after a bind a crash cut short (the index has both, the place
    /// has no marker yet: the same place only), or for an index made before store ids, as long
    /// as the index is empty or its newest rows' blobs are found at the location. With
    /// `adopting` (`repair`: an index rebuilt from the blobs) the index takes the location's id,
    /// or binds it, whatever the rows say. A marker that cannot be read because the object
    /// store does not answer is no verdict: nothing can be written there either. Checked once a
    /// process for each index and place.
    public func checkBinding(adopting: Bool = false) throws {
        let here = blobs.place
        let key = path + "\n" + here
        if BindingsChecked.shared.contains(key) { return }
        let marker: String?
        do { marker = try blobs.storeMarker() } catch let error as StoreError where error.isTransient { return }
        let id = try index.storeID()
        switch (id, marker) {
        case let (id?, marker?):
            guard id == marker else {
                throw StoreBindingError.otherStore(index: path, indexStore: id, location: blobLocation, locationStore: marker)
            }
        case let (nil, marker?):
            guard adopting else { throw StoreBindingError.indexOfAnotherStore(index: path, location: blobLocation, locationStore: marker) }
            try bind(marker, at: here, adopting: adopting)
        case let (id?, nil):
            // The index was bound; its place carries no marker: a bind a crash cut short (the
            // same place), or another place (a typo in --store, an empty fleet's index).
            if let bound = try index.storeLocation(), bound != here, !adopting {
                throw StoreBindingError.otherPlace(index: path, indexStore: id, bound: bound, location: blobLocation)
            }
            try bind(id, at: here, adopting: adopting)
        case (nil, nil):
            let named = try index.someBlobs(limit: 3)
            if !adopting, !named.isEmpty, try named.allSatisfy({ try blobs.attributes($0) == nil }) {
                throw StoreBindingError.blobsElsewhere(index: path, entries: try index.count(), location: blobLocation)
            }
            try bind(UUID().uuidString.lowercased(), at: here, adopting: adopting)
        }
        BindingsChecked.shared.insert(key)
    }

    /// Where the blobs are, for messages: the folder or the s3:// prefix that holds `blobs/`.
    var blobLocation: String { blobs.location("x").components(separatedBy: "/blobs/").first ?? blobs.location("x") }

    /// The index's id and place first (one node wins a race, and a node at another place than
    /// the winner's is refused), then the location's marker with the winner's id, then both
    /// read back.
    private func bind(_ proposed: String, at here: String, adopting: Bool) throws {
        let (id, bound) = try index.claimStore(id: proposed, location: here)
        if bound != here, !adopting, try blobs.storeMarker() == nil {
            throw StoreBindingError.otherPlace(index: path, indexStore: id, bound: bound, location: blobLocation)
        }
        try blobs.writeStoreMarker(id)
        let marker = try blobs.storeMarker()
        guard marker == id else {
            throw StoreBindingError.otherStore(index: path, indexStore: id, location: blobLocation, locationStore: marker ?? "none")
        }
    }
}

/// The index–place pairs this process found bound (every later open of them skips the check).
final class BindingsChecked: @unchecked Sendable {
    static let shared = BindingsChecked()
    private let lock = NSLock()
    private var keys: Set<String> = []
    func contains(_ key: String) -> Bool { lock.withLock { keys.contains(key) } }
    func insert(_ key: String) { lock.withLock { _ = keys.insert(key) } }
}

/// An index and a blob location that belong to different stores (exit code 1: the settings
/// name the wrong place).
public enum StoreBindingError: Error, CustomStringConvertible, Equatable {
    case otherStore(index: String, indexStore: String, location: String, locationStore: String)
    case indexOfAnotherStore(index: String, location: String, locationStore: String)
    case otherPlace(index: String, indexStore: String, bound: String, location: String)
    case blobsElsewhere(index: String, entries: Int, location: String)

    public var description: String {
        switch self {
        case let .otherStore(index, indexStore, location, locationStore):
            "the index \(index) belongs to store \(indexStore), the blobs at \(location) to store \(locationStore): "
                + "--store and --index name parts of two stores (nothing was changed)"
        case let .indexOfAnotherStore(index, location, locationStore):
            "the blobs at \(location) belong to store \(locationStore), whose index is not \(index): two indexes over one "
                + "blob location delete each other's blobs (nothing was changed; to rebuild a lost index from these blobs, "
                + "run `kvstore repair` with it)"
        case let .otherPlace(index, indexStore, bound, location):
            "the index \(index) belongs to store \(indexStore), bound to the blobs at \(bound); \(location) holds none of "
                + "them: does --store name the place this index's blobs are? (nothing was changed)"
        case let .blobsElsewhere(index, entries, location):
            "the index \(index) names \(entries) entries, and none of the newest entries' blobs is at \(location): does --store "
                + "name the place this index's blobs are? (nothing was changed)"
        }
    }
}
