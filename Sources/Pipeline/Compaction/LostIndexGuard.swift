import Store

/// Refuses to collect orphan blobs when the index, not the blobs, looks wrong.
///
/// An orphan is normally the leftover of a crash between publishing a blob and inserting its
/// row: younger than the index, and rare. A deleted, emptied or restored-from-backup index
/// turns every blob into an "orphan"; collecting them would delete the store. So orphans are
/// collected only when none is older than the index itself and they do not outnumber the
/// rows (past a small allowance); otherwise compaction stops and says to run `kvstore repair`
/// (or `--force` to collect them anyway).
public struct LostIndexGuard: Sendable {
    /// Orphans allowed beyond the row count before the index is suspected.
    public static let allowance = 16

    public var rows: Int
    public var indexCreatedAt: Double

    public init(rows: Int, indexCreatedAt: Double) {
        self.rows = rows; self.indexCreatedAt = indexCreatedAt
    }

    /// Why these orphans must not be collected, or nil when they may be.
    public func objection(orphans: [(name: String, bytes: Int, modified: Double)]) -> CompactionError? {
        // A second of slack: file times come from a coarse clock that may lag the index's.
        let older = orphans.filter { $0.modified < indexCreatedAt - 1 }.count
        if older > 0 {
            return .indexLooksLost(rows: rows, orphans: orphans.count,
                                   reason: "\(older) of them are older than the index itself")
        }
        if orphans.count > Self.allowance && orphans.count > rows {
            return .indexLooksLost(rows: rows, orphans: orphans.count, reason: "they outnumber the index's rows")
        }
        return nil
    }
}

/// A compaction that stopped rather than risk the store.
public enum CompactionError: Error, CustomStringConvertible {
    case indexLooksLost(rows: Int, orphans: Int, reason: String)

    public var description: String {
        switch self {
        case .indexLooksLost(let rows, let orphans, let reason):
            "the index holds \(rows) entries but \(orphans) blobs have no row, and \(reason): the index looks lost or replaced, so nothing was deleted. Run `kvstore repair` to rebuild it from the blobs, or `kvstore compact --force` to delete them as orphans"
        }
    }
}
