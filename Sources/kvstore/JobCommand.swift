import ArgumentParser
import Foundation
import Pipeline
import SharedStore
import Store

/// `kvstore job run|check FILE`: the specs in jobs/ (docs/JOBS.md).
struct JobCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "job", abstract: "Run or check a job spec (jobs/ingest.toml, jobs/compact.toml).",
        subcommands: [JobRunCommand.self, JobCheckCommand.self])
}

/// A spec that cannot be used is a usage error (exit 1), naming file, line and key.
private func load(_ file: String) throws -> JobSpec {
    do { return try JobSpec.load(path: file) } catch {
        Terminal.error("\(error)")
        throw ExitCode(Exit.usage)
    }
}

/// The store a spec names, else the environment's; a value it cannot use is exit 1 naming
/// the file, the line and the key.
private func store(_ settings: StoreSettings?) throws -> StoreSpec {
    guard let settings else { return try StoreSpec.named(store: nil, index: nil, cache: nil, cacheSize: nil, storeConfig: nil) }
    return try StoreSpec.named(by: settings)
}

struct JobRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run a spec once: an ingest spec runs the daemon (until SIGTERM, or once), a compact spec compacts.")

    @Flag(name: .long, help: "Print JSON for scripts.")
    var json = false

    @Argument(help: "The spec file.")
    var file: String

    func run() throws {
        switch try load(file) {
        case .ingest(let job):
            try WatchCommand.runDaemon(store: try store(job.store), layout: job.layout, settings: job.settings, json: json)
        case .compact(let job):
            try CompactCommand.compact(store: try store(job.store).openExisting(), settings: job.settings, json: json)
        }
    }
}

struct JobCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Validate a spec; print what it would do, or the bad field (exit 1).")

    @Argument(help: "The spec file.")
    var file: String

    func run() throws {
        switch try load(file) {
        case .ingest(let job):
            let s = job.settings
            let spec = try store(job.store)
            print("\(file): ingest job")
            print("  inbox   \(job.layout.inbox)")
            describe(spec)
            print("  policy  \(s.policy.name), \(s.jobs) job\(s.jobs == 1 ? "" : "s"), \(s.forcePolling ? "polling" : "inotify")\(s.once ? ", once" : "")")
            print("  inputs  \(job.layout.done.map { "moved to \($0)" } ?? "deleted") once stored; failures to \(job.layout.failed)")
        case .compact(let job):
            let s = job.settings
            let spec = try store(job.store)
            print("\(file): compact job")
            describe(spec)
            print("  budget  \(s.budget.map { ByteSize(bytes: $0).description } ?? "none")")
            print("  cold    \(s.coldPolicy.map { "re-pack after \(s.coldDays!) days with \($0.name)" } ?? "no re-packing")")
            print("  verify  \(s.verifySample) sampled; grace \(s.grace) s\(s.dryRun ? "; dry run" : "")")
        }
    }

    /// The store as it will be opened (nothing is connected to), and an S3 store's node cache.
    private func describe(_ spec: StoreSpec) {
        print("  store   \(spec.description)")
        if case .s3 = spec.blobs { print("  cache   \(spec.cacheDirectory), up to \(ByteSize(bytes: spec.cacheCapacity))") }
    }
}
