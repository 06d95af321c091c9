/// What `migrate` did, or in a dry run would do.
public struct MigrationReport: Sendable, Codable {
    public struct Damage: Sendable, Codable, Equatable {
        public var id: String
        public var problem: String
    }

    /// The two stores, as the command named them.
    public var from = ""
    public var to = ""
    /// Source entries looked at.
    public var entries = 0
    /// Entries copied (in a dry run: that would be), and their blobs' bytes.
    public var copied = 0
    public var bytesCopied = 0
    /// Entries the destination already held with the same blob: a re-run's finished part.
    public var alreadyThere = 0
    /// Ids the destination holds with another blob (another policy, or re-packed there):
    /// its entry is kept as it is.
    public var keptDifferent: [String] = []
    /// Source entries whose blob is damaged or missing: not copied.
    public var damaged: [Damage] = []
    /// Source entries removed while the migration ran.
    public var removedMeanwhile = 0
    public var dryRun = false
    public var milliseconds = 0.0

    public init() {}

    /// Counts one entry's outcome.
    mutating func add(_ step: MigrationStep, id: String) {
        entries += 1
        switch step {
        case .copied(let bytes), .wouldCopy(let bytes): copied += 1; bytesCopied += bytes
        case .alreadyThere: alreadyThere += 1
        case .keptDifferent: keptDifferent.append(id)
        case .damaged(let problem): damaged.append(Damage(id: id, problem: problem))
        case .removed: removedMeanwhile += 1
        }
    }
}

/// What became of one source entry.
public enum MigrationStep: Sendable, Equatable {
    /// Its blob was verified, copied and published, then its row inserted.
    case copied(bytes: Int)
    /// Dry run: it would be copied.
    case wouldCopy(bytes: Int)
    /// The destination holds the id with the same blob.
    case alreadyThere
    /// The destination holds the id with another blob, kept.
    case keptDifferent(destinationBlob: String)
    /// The source blob is damaged or missing: nothing of it was written.
    case damaged(String)
    /// The source entry was removed while the migration ran.
    case removed
}

/// A migration stopped by a failure that is not the source's damage (a server down, a full
/// disk, a destination refusing writes): what was done until then, and the failure. Running
/// the same migration again resumes it.
public struct MigrationStopped: Error, CustomStringConvertible {
    public var report: MigrationReport
    public var cause: Error

    public var description: String { "\(cause)" }
}
