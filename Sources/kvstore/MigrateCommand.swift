import ArgumentParser
import Foundation
import Pipeline
import SharedStore
import Store

/// `kvstore migrate`: copies every entry of one store into another, e.g. a local store
/// into a shared one (S3 + PostgreSQL) and back (docs/DESIGN.md, "Migrating a store").
struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Copy every entry of one store into another, verifying every blob (resumable).",
        discussion: """
        Each side is a directory or s3://BUCKET/PREFIX with its index (--from-index, --to-index), or a store
        config file (--from-config, --to-config; e.g. two S3 endpoints). Each source entry, in id order: its blob is checked whole (content against its name, every layer
        decoded), copied and made durable in the destination, then its row is inserted with the same record
        (created, last accessed, access count, pinned) and image sources. Ids the destination already holds
        are skipped, so running the same command again after a failure or a kill does only what is left.
        A damaged source blob is reported and not copied (exit 3 once the rest is copied); a transient
        failure (a server down, a full disk) stops the run with exit 4.
        """)

    @Option(name: .long, help: "The store to copy from: a directory, or s3://BUCKET/PREFIX (with --from-index).")
    var from: String?

    @Option(name: .customLong("from-index"), help: "The source's index: a directory (SQLite) or postgresql://USER@HOST[:PORT]/DB. Required with an s3:// source; default: the source directory.")
    var fromIndex: String?

    @Option(name: .customLong("from-config"), help: "The source as a store config file (docs/DESIGN.md, \"Store URL and config\"), instead of --from.")
    var fromConfig: String?

    @Option(name: .long, help: "The store to copy into: a directory, or s3://BUCKET/PREFIX (with --to-index).")
    var to: String?

    @Option(name: .customLong("to-index"), help: "The destination's index, as --from-index.")
    var toIndex: String?

    @Option(name: .customLong("to-config"), help: "The destination as a store config file, instead of --to.")
    var toConfig: String?

    @Option(name: .long, help: "For the s3:// side(s): this node's blob cache (default: $XDG_CACHE_HOME/kvstore, else ~/.cache/kvstore).")
    var cache: String?

    @Option(name: .long, help: "For the s3:// side(s): the size the blob cache is kept under, e.g. 20GB (default 10GB).")
    var cacheSize: String?

    @Flag(name: .long, help: "Say what would be copied; read no blob, write nothing.")
    var dryRun = false

    @Flag(name: .long, help: "Print JSON for scripts (the summary only).")
    var json = false

    func validate() throws {
        for (name, url, index, config) in [("from", from, fromIndex, fromConfig), ("to", to, toIndex, toConfig)] {
            // An empty name would fall back to $KVSTORE_HOME: a migration names both stores.
            switch (url, config) {
            case (nil, nil): throw ValidationError("--\(name) or --\(name)-config names the store to copy \(name)")
            case (_?, _?): throw ValidationError("--\(name) and --\(name)-config both name a store: give one")
            case ("", _), (_, ""): throw ValidationError("--\(name) or --\(name)-config: an empty name")
            default: break
            }
            if config != nil && index != nil {
                throw ValidationError("--\(name)-index cannot be combined with --\(name)-config: the config file names the whole store")
            }
        }
        if (cache != nil || cacheSize != nil) && from?.hasPrefix("s3://") != true && to?.hasPrefix("s3://") != true {
            throw ValidationError("--cache and --cache-size apply to an s3:// --from or --to (a config file names its own cache)")
        }
    }

    func run() throws {
        let source = try spec(from, index: fromIndex, config: fromConfig)
        let destination = try spec(to, index: toIndex, config: toConfig)
        if source.blobPlace == destination.blobPlace || source.indexPlace == destination.indexPlace {
            let part = source.blobPlace == destination.blobPlace ? "blobs" : "index"
            Terminal.error("--from and --to name the same store (the same \(part): \(source.description)); a migration copies between two stores")
            throw ExitCode(Exit.usage)
        }
        // A source that does not exist is a typo, not an empty store: never create it.
        if let file = source.sqliteIndexFile, !FileSystem.exists(file) {
            Terminal.error("--from \(source.description): no store there (no \(file))")
            throw ExitCode(Exit.notFound)
        }
        // A dry run creates nothing: a destination not created yet holds nothing.
        let destinationExists = destination.sqliteIndexFile.map(FileSystem.exists) ?? true
        let migrator: Migrator
        do {
            migrator = Migrator(source: try source.open(binding: .skip), destination: dryRun && !destinationExists ? nil : try destination.open())
        } catch let error as StoreError where error.isTransient {
            Terminal.note("stopped before copying anything; run the same command again to resume")
            throw error
        }

        let report: MigrationReport
        do {
            report = try migrator.run(dryRun: dryRun) { record, step, position, total in
                if !json { print(Self.line(record, step, position: position, total: total)) }
            }
        } catch let stopped as MigrationStopped {
            var partial = stopped.report
            partial.from = source.description; partial.to = destination.description
            Terminal.note("stopped: \(partial.copied) copied, \(partial.alreadyThere) already there, \(partial.damaged.count) damaged of \(partial.entries) looked at; run the same command again to resume")
            throw stopped.cause
        }
        var summary = report
        summary.from = source.description
        summary.to = destination.description
        if json { Terminal.json(summary) } else { Self.printSummary(summary) }
        if !report.damaged.isEmpty { throw ExitCode(Exit.invalid) }
    }

    /// One side, named by a URL or directory (the cache options go to an s3:// side only) or
    /// by a config file. Neither `$KVSTORE_CONFIG` nor `$KVSTORE_HOME` is consulted.
    func spec(_ store: String?, index: String?, config: String?) throws -> StoreSpec {
        if let config { return try StoreSpec.named(by: StoreSettings(configFile: config)) }
        let store = store ?? ""
        let s3 = store.hasPrefix("s3://")
        return try StoreSpec(store: store, index: index, cache: s3 ? cache : nil, cacheSize: s3 ? cacheSize : nil)
    }

    static func line(_ record: EntryRecord, _ step: MigrationStep, position: Int, total: Int) -> String {
        let at = "\(position)/\(total)"
        switch step {
        case .copied(let bytes): return "copied         \(at)  \(record.id)  \(Terminal.bytes(bytes))"
        case .wouldCopy(let bytes): return "would copy     \(at)  \(record.id)  \(Terminal.bytes(bytes))"
        case .alreadyThere: return "already there  \(at)  \(record.id)"
        case .keptDifferent(let blob): return "kept           \(at)  \(record.id)  (the destination holds it as blob \(blob))"
        case .damaged(let problem): return "DAMAGED        \(at)  \(record.id): \(Terminal.oneLine(problem))"
        case .removed: return "removed        \(at)  \(record.id)  (from the source, while migrating)"
        }
    }

    static func printSummary(_ r: MigrationReport) {
        func row(_ label: String, _ text: String) { print(label.padding(toLength: 14, withPad: " ", startingAt: 0) + text) }
        print("\(r.dryRun ? "dry run: " : "")\(r.from) → \(r.to)")
        row(r.dryRun ? "would copy" : "copied", "\(r.copied) entries, \(Terminal.bytes(r.bytesCopied))")
        row("already there", "\(r.alreadyThere) entries")
        if !r.keptDifferent.isEmpty { row("kept", "\(r.keptDifferent.count) entries the destination holds with another blob") }
        if r.removedMeanwhile > 0 { row("removed", "\(r.removedMeanwhile) entries removed from the source meanwhile") }
        row("damaged", "\(r.damaged.count) entries (not copied)")
        for d in r.damaged { print("FAIL \(d.id): \(Terminal.oneLine(d.problem))") }
        row("took", String(format: "%.0f ms", r.milliseconds))
    }
}
