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

extension IngestFailureReport {
    /// A report written now.
    init(file: String, stage: IngestStage, message: String, policy: String) {
        self.init(file: file, stage: stage.rawValue, message: message, time: ISO8601DateFormatter().string(from: Date()), policy: policy)
    }
}

/// What happens to an input once the daemon is done with it: ingested inputs are moved to
/// `done/` or deleted, failed ones move to `failed/` with a report beside them.
///
/// Each move is a rename within one filesystem, so the input is always in exactly one
/// place, and never replaces a file (RENAME_NOREPLACE: a taken name gets `.1`, `.2`, …; a
/// name that would outgrow 255 bytes is shortened, `InboxName`). An ingested input is moved
/// or deleted only after its entry is durable (blob fsynced and renamed, index row
/// committed with synchronous=FULL). Before each move the folders are checked to still be
/// where they were opened (`InboxFolders.checkInPlace`).
struct InputDisposal {
    let folders: InboxFolders

    /// Moves (or deletes) an ingested input; returns its path in done/, nil when deleted.
    func finish(_ name: String, in source: InboxFolder) throws -> String? {
        try folders.checkInPlace()
        guard let done = folders.done else {
            try source.remove(name)
            return nil
        }
        guard let moved = try source.moveToFreeName(name, to: done) else {
            throw StoreError.io(path: source.path + "/" + name, operation: "move to \(done.path)", errno: ENOENT)
        }
        return done.path + "/" + moved
    }

    /// Writes `failed/STEM.error.json` (temp + fsync + rename), then moves the input to
    /// `failed/STEM`, where STEM is the input's name (numbered and shortened as needed);
    /// returns the input's path in failed/.
    func fail(_ name: String, in source: InboxFolder, report: IngestFailureReport) throws -> String {
        try folders.checkInPlace()
        let failed = folders.failed
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = Array(try encoder.encode(report)) + [0x0A]
        let temp = ".\(UUID().uuidString.lowercased()).error.json.tmp"
        defer { try? failed.remove(temp) }  // also when the write itself failed part way
        try write(json, to: temp, in: failed)
        var n = -1
        while true {
            n += 1
            let stem = InboxName.numbered(name, n, reserve: Self.reportSuffix.utf8.count)
            if failed.contains(stem) { continue }
            guard try failed.move(temp, to: failed, as: stem + Self.reportSuffix) == .moved else { continue }
            switch try source.move(name, to: failed, as: stem) {
            case .moved:
                try failed.sync()
                return failed.path + "/" + stem
            case .targetExists:
                // Taken in between (another daemon): take the report back and try the next name.
                _ = try failed.move(stem + Self.reportSuffix, to: failed, as: temp)
            case .sourceGone:
                try? failed.remove(stem + Self.reportSuffix)
                throw StoreError.io(path: source.path + "/" + name, operation: "move to \(failed.path)", errno: ENOENT)
            }
        }
    }

    static let reportSuffix = ".error.json"

    private func write(_ bytes: [UInt8], to name: String, in folder: InboxFolder) throws {
        let fd = folder.openEntry(name, O_WRONLY | O_CREAT | O_EXCL, mode: 0o644)
        guard fd >= 0 else { throw StoreError.io(path: folder.path + "/" + name, operation: "create", errno: errno) }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError.io(path: folder.path + "/" + name, operation: "write", errno: errno)
            }
            offset += n
        }
        guard fsync(fd) == 0 else { throw StoreError.io(path: folder.path + "/" + name, operation: "fsync", errno: errno) }
    }
}
