import Foundation
import Store

/// Why an input could not be ingested, as written beside it in `failed/NAME.error.json`.
public struct IngestFailureReport: Codable, Sendable, Equatable {
    /// The input's name in the inbox.
    public var file: String
    /// The ingest step that failed (`IngestStage`: read, validate, pack, index).
    public var stage: String
    /// The error, naming the file, field and value involved.
    public var message: String
    /// ISO 8601, UTC.
    public var time: String
    public var policy: String
}

/// What happens to an input once the daemon is done with it: ingested inputs are moved to
/// `done/` or deleted, failed ones move to `failed/` with a report beside them.
///
/// Each move is a rename within one filesystem, so the input is always in exactly one
/// place. An ingested input is moved or deleted only after its entry is durable (blob
/// fsynced and renamed, index row committed with synchronous=FULL).
struct InputDisposal {
    let layout: InboxLayout

    /// Moves (or deletes) an ingested input; returns where it went, nil when deleted.
    func finish(_ path: String, name: String) throws -> String? {
        guard let done = layout.done else {
            try FileSystem.remove(path)
            return nil
        }
        let to = InboxLayout.freePath(in: done, for: name)
        guard rename(path, to) == 0 else { throw StoreError.io(path: path, operation: "move to \(done)", errno: errno) }
        return to
    }

    /// Writes `failed/NAME.error.json` (atomically), then moves the input to `failed/NAME`.
    func fail(_ path: String, name: String, report: IngestFailureReport) throws -> String {
        let to = InboxLayout.freePath(in: layout.failed, for: name, alsoFree: ".error.json")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = try encoder.encode(report)
        let file = try AtomicFile(finalPath: to + ".error.json",
                                  tempPath: "\(layout.failed)/.\(UUID().uuidString.lowercased()).error.json.tmp")
        try file.write(Array(json) + [0x0A])
        try file.commit()
        guard rename(path, to) == 0 else { throw StoreError.io(path: path, operation: "move to \(layout.failed)", errno: errno) }
        return to
    }

    /// Fails when a configured folder is on another filesystem than the inbox, where a
    /// rename could not move an input atomically.
    func checkSameFilesystem() throws {
        var inbox = stat()
        guard stat(layout.inbox, &inbox) == 0 else { throw StoreError.io(path: layout.inbox, operation: "stat", errno: errno) }
        for dir in [layout.failed, layout.work] + (layout.done.map { [$0] } ?? []) {
            var st = stat()
            guard stat(dir, &st) == 0 else { throw StoreError.io(path: dir, operation: "stat", errno: errno) }
            guard st.st_dev == inbox.st_dev else {
                throw StoreError.io(path: dir, operation: "use as an inbox folder (it is on another filesystem than \(layout.inbox); inputs move by rename)", errno: EXDEV)
            }
        }
    }
}
