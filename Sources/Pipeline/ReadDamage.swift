import Foundation
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
        guard !blobs.isShared, let blob = record.blob(namedBy: error) else { return }
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

extension EntryRecord {
    /// The blob of this entry (its part or its segment) whose file a failed check's `error`
    /// names (`corrupt` carries the file's path), if it names one.
    public func blob(namedBy error: Error) -> String? {
        guard case StoreError.corrupt(let path, _)? = error as? StoreError else { return nil }
        let file = (path as NSString).lastPathComponent
        return blobs.first { file.hasPrefix($0) }
    }
}
