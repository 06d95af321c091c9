import ArgumentParser
import Foundation
import LightKV
import Pipeline
import Store

/// `kvstore compact`: what cron runs to keep a store within its budget.
struct CompactCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compact",
        abstract: "Evict, re-pack cold entries, collect garbage, checkpoint, verify a sample (exit 3 if it fails).",
        discussion: """
        Safe while `watch` runs and while fetches happen. Steps: delete temporary files older than \
        --grace-seconds and blobs removed on purpose (rm, eviction, re-pack); adopt orphan blobs (no row) older \
        than --grace-seconds that read back whole (their row rebuilt from the pack, as `repair` does), delete \
        damaged ones and superseded copies; re-pack entries not fetched for --cold-days with --cold-policy (same id, blob
        swapped atomically); evict least-recently-fetched unpinned entries until stored bytes ≤ --budget;
        checkpoint and optimise SQLite; verify --verify-sample random entries. --dry-run changes nothing.
        """)

    @OptionGroup var options: StoreOptions
    @OptionGroup var policyFile: PolicyFileOption

    @Option(name: .long, help: "Byte budget for stored entries: bytes, or e.g. 500MB, 50GB, 1TiB.")
    var budget: String?

    @Option(name: .long, help: "Re-pack unpinned entries not fetched for this many days (needs --cold-policy).")
    var coldDays: Double?

    @Option(name: .long, help: "Policy for cold entries, e.g. lightkv+int4+zstd19.")
    var coldPolicy: String?

    @Flag(name: .long, help: "Say what would be done; change nothing.")
    var dryRun = false

    @Option(name: .long, help: "Random entries to read back fully and check.")
    var verifySample = 8

    @Option(name: .long, help: "Age in seconds before an unreferenced blob or temporary file is deleted.")
    var graceSeconds = 3600.0

    func validate() throws {
        if (coldDays == nil) != (coldPolicy == nil) { throw ValidationError("--cold-days and --cold-policy go together") }
        if let budget, ByteSize(parsing: budget) == nil {
            throw ValidationError("--budget \"\(budget)\" is not a byte count (e.g. 123456, 500MB, 50GB, 1TiB)")
        }
        if let d = coldDays, d < 0 { throw ValidationError("--cold-days must be ≥ 0, got \(d)") }
        if verifySample < 0 || graceSeconds < 0 { throw ValidationError("--verify-sample and --grace-seconds must be ≥ 0") }
    }

    func run() throws {
        var settings = CompactionSettings()
        settings.budget = budget.flatMap { ByteSize(parsing: $0)?.bytes }
        settings.coldDays = coldDays
        if let coldPolicy {
            settings.coldPolicy = try policyFile.resolve(coldPolicy)
        }
        settings.grace = graceSeconds
        settings.verifySample = verifySample
        settings.dryRun = dryRun
        try Self.compact(store: options.open(), settings: settings, json: options.json)
    }

    /// Runs compaction and prints its summary; shared with `kvstore job run`.
    static func compact(store: StoreRoot, settings: CompactionSettings, json: Bool) throws {
        let showProgress = isatty(2) == 1 && !json
        let report = try Compactor(root: store).run(settings) { line in
            if showProgress { FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8)) }
        }
        if showProgress { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        if json {
            Terminal.json(report)
        } else {
            let verb = { (done: String) in report.dryRun ? "would be \(done)" : done }
            print("\(report.dryRun ? "dry run: " : "")\(report.entriesBefore) entries, \(Terminal.bytes(report.bytesBefore)) before")
            print("re-packed    \(report.repacked.count) entries \(verb("re-packed")), \(report.repackBytesSaved >= 0 ? "saving" : "growing by") \(Terminal.bytes(abs(report.repackBytesSaved)))")
            print("evicted      \(report.evicted.count) entries \(verb("evicted")) (\(Terminal.bytes(report.evictedBytes)))")
            print("removed      \(report.doomedRemoved) blobs of removed entries \(verb("deleted")) (\(Terminal.bytes(report.doomedBytes)))")
            print("orphans      \(report.orphansAdopted.count) adopted, \(report.orphansRemoved) damaged or superseded blobs \(verb("deleted")) (\(Terminal.bytes(report.orphanBytes)))")
            for id in report.orphansAdopted { print("adopted      \(id) (its blob had no row; indexed again from the pack)") }
            for f in report.damagedOrphans { print("DAMAGED      \(f.id): \(f.problem)") }
            for f in report.orphansKept { print("kept         \(f.id): \(f.problem)") }
            for stray in report.strays { print("skipped      \(stray.path): \(stray.problem)") }
            for path in report.reshelved { print("moved        \(path) to its own fan-out folder") }
            print("temporary    \(report.temporaryFilesRemoved) files \(verb("deleted")) (\(Terminal.bytes(report.temporaryBytes)))")
            if report.uploadsAborted > 0 { print("uploads      \(report.uploadsAborted) incomplete uploads \(verb("aborted"))") }
            print("freed        \(Terminal.bytes(report.bytesFreed))\(report.dryRun ? " (re-pack savings not estimated)" : "")")
            print("after        \(report.entriesAfter) entries, \(Terminal.bytes(report.bytesAfter))")
            if report.overBudgetPinned { print("note         still over budget: the rest is pinned") }
            print("verified     \(report.verified) sampled, \(report.verifyFailures.count) failed")
            for f in report.verifyFailures { print("FAIL \(f.id): \(f.problem)") }
            print(String(format: "took         %.0f ms", report.milliseconds))
        }
        if !report.verifyFailures.isEmpty { throw ExitCode(Exit.invalid) }
    }
}
