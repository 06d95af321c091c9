import Dispatch
import Foundation
import LightKV
import Store

/// What `verify` found.
public struct VerifyReport: Sendable, Codable {
    public struct Failure: Sendable, Codable {
        public var id: String
        public var problem: String
    }
    public var checked: Int = 0
    public var failures: [Failure] = []
    /// Blob files no index row refers to (left by a crash or an interrupted removal).
    public var orphans: [String] = []
    /// Files under tmp/ (in-flight writes, or garbage left by a crash).
    public var temporaryFiles: [String] = []

    public var ok: Bool { failures.isEmpty }
}

/// Checks that stored entries can be read back exactly as written.
public struct Verifier {
    public let root: StoreRoot

    public init(root: StoreRoot) { self.root = root }

    /// Checks `records` (all entries when nil) and, when checking all, looks for orphans. On
    /// a shared store each blob is read from the object store itself, not from this node's
    /// cache: a copy cached before the object was damaged or replaced would vouch for it.
    public func verify(_ records: [EntryRecord]? = nil) throws -> VerifyReport {
        var report = VerifyReport()
        let all = records == nil
        let entries = try records ?? root.index.all()
        var dropped: Set<String> = []
        // What reads found damaged before (`EntryIndex.noteDamaged`): forgotten once read back whole.
        let marked = try root.index.damagedBlobs()
        for record in entries {
            for name in record.blobs where dropped.insert(name).inserted { root.blobs.dropLocalCopy(name) }
            // Each blob is read from where it is kept, not from a cached copy: what is found is the blob's.
            switch try recheck(record, noting: true) {
            case .removed: continue
            case .intact:
                report.checked += 1
                let healed = record.blobs.filter { marked[$0] != nil }
                if !healed.isEmpty { try root.index.forgetDamaged(healed) }
            case .damaged(let problem):
                report.checked += 1
                report.failures.append(.init(id: record.id, problem: problem))
            }
        }
        if all {
            // A doomed blob waits out its grace period (shared stores): expected, not an orphan.
            let referenced = try root.index.referencedBlobs().union(try root.index.doomed().map(\.blob))
            report.orphans = try root.blobs.names().filter { !referenced.contains($0) }.map(root.blobs.location)
            report.temporaryFiles = FileSystem.list(root.blobs.tempDirectory).map { "\(root.blobs.tempDirectory)/\($0)" }
        }
        return report
    }

    /// What checking an entry found, once changes made meanwhile are accounted for.
    enum EntryCheck: Equatable {
        case intact
        case damaged(String)
        /// Removed or evicted while it was checked: not damage.
        case removed
    }

    /// Checks an entry as it stands once the check is over. A failed check is repeated on
    /// the row read afresh: a `rm` or an eviction may have removed it, compaction may have
    /// swapped it to a new blob and collected the old one in between. With `noting`, the
    /// damaged blob is recorded for `match` to pass over (`EntryIndex.noteDamaged`): only
    /// where what was read is the blob itself, not a copy cached before it changed.
    func recheck(_ record: EntryRecord, noting: Bool = false) throws -> EntryCheck {
        var record = record
        func damaged(_ examined: Examined) -> EntryCheck {
            if examined.found && (noting || !root.blobs.isShared) {
                try? root.index.noteDamaged(examined.fault.blob, problem: examined.fault.problem)
            }
            return .damaged(examined.fault.problem)
        }
        for _ in 0..<3 {
            guard let examined = examine(record) else { return .intact }
            guard let fresh = try root.index.entry(id: record.id) else { return .removed }
            if fresh.blob == record.blob { return damaged(examined) }
            record = fresh
        }
        return examine(record).map(damaged) ?? .intact
    }

    /// Which of an entry's blobs is damaged (its own part, or its segment), and how.
    struct Fault {
        var blob: String
        var problem: String
    }

    /// A fault and whether it was found: a value of `fault(of:)` is, while what kept the check
    /// from reading (a full table of open files, a disk error, an unreachable object store:
    /// thrown) is reported alike but says nothing of the blob, so it is never recorded.
    typealias Examined = (fault: Fault, found: Bool)

    func examine(_ record: EntryRecord) -> Examined? {
        do { return try fault(of: record).map { ($0, true) } } catch {
            return (Fault(blob: record.blob(namedBy: error) ?? record.blob, problem: "\(error)"), false)
        }
    }

    /// The first problem with one entry's blob (and segment), or nil when it reads back intact.
    public func check(_ record: EntryRecord) -> String? { examine(record)?.fault.problem }

    /// The same, throwing what could not be checked now (`StoreError.isTransient`).
    public func damage(of record: EntryRecord) throws -> String? { try fault(of: record)?.problem }

    func fault(of record: EntryRecord) throws -> Fault? {
        let path = root.blobs.location(record.blob)
        do {
            guard try root.blobs.attributes(record.blob) != nil else { return Fault(blob: record.blob, problem: "blob \(path) is missing") }
            if let problem = try Self.damage(inPack: root.blobs.openPack(record.blob), of: record, location: path) {
                return Fault(blob: record.blob, problem: problem)
            }
            return try segmentFault(of: record)
        } catch let error as StoreError where error.isTransient {
            throw error
        } catch let error as StoreError {
            // Unreadable (EACCES, EIO) is not damage: nothing may be relinked or deleted on it.
            if case .io(_, _, let code) = error, code != ENOENT { throw error }
            return Fault(blob: record.blob(namedBy: error) ?? record.blob, problem: "\(error)")
        } catch {
            return Fault(blob: record.blob, problem: "\(error)")
        }
    }

    /// The first damage in a segmented entry's segment (docs/design/segments.md): missing,
    /// not the segment the entry's pack names, content against its name, every layer decoded.
    /// Nil for an entry stored whole, or an intact segment.
    public func segmentDamage(of record: EntryRecord) throws -> String? { try segmentFault(of: record)?.problem }

    func segmentFault(of record: EntryRecord) throws -> Fault? {
        guard let name = record.segment else { return nil }
        let location = root.blobs.location(name)
        do {
            guard try root.blobs.attributes(name) != nil else { return Fault(blob: name, problem: "segment \(location) is missing") }
            let pack = try root.blobs.openPack(record.blob)
            guard let segment = try Fetcher(root: root).segment(of: record, pack: pack, checkContent: true) else { return nil }
            return Self.firstUndecodableLayer(segment).map { Fault(blob: name, problem: "segment \(location): \($0)") }
        } catch let error as StoreError where error.isTransient {
            throw error
        } catch let error as StoreError {
            // Unreadable (EMFILE, EIO) is not damage, as for the part.
            if case .io(_, _, let code) = error, code != ENOENT { throw error }
            // The part's own pack naming another segment, or none, is the part's damage.
            return Fault(blob: record.blob(namedBy: error) ?? name, problem: "\(error)")
        } catch {
            return Fault(blob: name, problem: "\(error)")
        }
    }

    /// The first layer of `pack` that does not decode, decoding all on every core; nil when all
    /// do. Decoded as the input's dtype: this checks the stored numbers, not whether they fit
    /// the F16 a default fetch asks for.
    static func firstUndecodableLayer(_ pack: PackReader) -> String? {
        let dtype = DType(rawValue: pack.header.inputDType) ?? .f32
        var problems = [String?](repeating: nil, count: pack.header.layers.count)
        problems.withUnsafeMutableBufferPointer { out in
            let results = out
            DispatchQueue.concurrentPerform(iterations: pack.header.layers.count) { i in
                do { _ = try Fetcher.decodeLayer(pack, i, dtype: dtype) } catch { results[i] = "\(error)" }
            }
        }
        return problems.compactMap { $0 }.first
    }

    /// The same for the pack file at `file`; a file that does not open as a pack is damage.
    public static func damage(inPackAt file: String, of record: EntryRecord, location: String) throws -> String? {
        let pack: PackReader
        do { pack = try PackReader(path: file) } catch let error as StoreError where error.isTransient { throw error } catch { return "\(error)" }
        return try damage(inPack: pack, of: record, location: location)
    }

    /// The first damage in `pack` read as `record`'s blob (at `location`, for messages): its
    /// whole-file XXH3-128 against the record's checksum, its layer count, every layer
    /// decoded. Nil when it reads back intact. A transient failure (`StoreError.isTransient`:
    /// memory, a full disk) is thrown instead, so a caller can tell a damaged blob from one it
    /// could not check now.
    public static func damage(inPack pack: PackReader, of record: EntryRecord, location: String) throws -> String? {
        do {
            try pack.checkContent(named: record.checksum)
            guard pack.header.layers.count == record.layers else {
                return "blob \(location) holds \(pack.header.layers.count) layers, the index expects \(record.layers)"
            }
            return firstUndecodableLayer(pack)
        } catch let error as StoreError where error.isTransient {
            throw error
        } catch {
            return "\(error)"
        }
    }
}
