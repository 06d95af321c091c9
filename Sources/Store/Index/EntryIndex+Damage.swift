import Foundation

/// Blobs a read proved damaged: content against its name, or a pack that is not the entry's.
///
/// Damage is reported where it is found (exit 3, a 500); this record is for the lookup a
/// serving node makes before it fetches: `longestPrefix` passes over the entries naming a
/// damaged blob, so a damaged segment does not hide another entry holding the same prefix
/// intact. A blob published again (an ingest, `repair`, a later question re-publishing its
/// segment) or read back whole by `verify` is forgotten here.
extension EntryIndex {
    /// Records that blob `name` failed a check (`problem`), by the index's clock.
    public func noteDamaged(_ name: String, problem: String) throws {
        try db.query("""
            INSERT INTO damaged (blob, problem, found_at) VALUES (?, ?, \(db.dialect.now))
            ON CONFLICT (blob) DO UPDATE SET problem = excluded.problem, found_at = excluded.found_at
            """, [.text(name), .text(String(problem.prefix(1000)))])
    }

    /// Forgets what was recorded of `names` (read back whole, or published again).
    public func forgetDamaged(_ names: [String]) throws {
        for name in names { try db.query("DELETE FROM damaged WHERE blob = ?", [.text(name)]) }
    }

    /// The blobs recorded as damaged, with the problem found.
    public func damagedBlobs() throws -> [String: String] {
        var out: [String: String] = [:]
        for row in try db.query("SELECT blob, problem FROM damaged") {
            if let blob = row.text("blob") { out[blob] = row.text("problem") ?? "" }
        }
        return out
    }
}
