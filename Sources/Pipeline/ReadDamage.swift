import Store

/// What a failed read leaves behind: a record of the damaged blob (`EntryIndex.noteDamaged`),
/// so that `match` passes over the entries naming it instead of naming them again and again.
extension StoreRoot {
    /// Records the blob of `record` that `error` (a failed read) names as damaged. Only on a
    /// local store: on a shared one the read was of this node's cached copy, whose damage is
    /// not the object's (`verify` reads the objects and records theirs). Best effort: the
    /// read's own error is what the caller reports.
    public func noteDamage(_ error: Error, reading record: EntryRecord) {
        // Only what a check found (`corrupt`, naming the file), never what kept it from reading.
        guard !blobs.isShared, let blob = Verifier.blob(record, named: error) else { return }
        try? index.noteDamaged(blob, problem: "\(error)")
    }

    /// `body`, with any damage it finds in `record`'s blobs recorded (`noteDamage`).
    public func noting<T>(damageOf record: EntryRecord, _ body: () throws -> T) throws -> T {
        do { return try body() } catch {
            noteDamage(error, reading: record)
            throw error
        }
    }
}
