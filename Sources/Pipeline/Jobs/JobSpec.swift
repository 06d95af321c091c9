import Foundation
import Store
import LightKV

/// A job spec from `jobs/`: what `kvstore job run FILE` does (docs/JOBS.md).
///
///     kind = "ingest"                 # or "compact"
///     store = "/var/lib/kvstore"      # optional (or store_config = "FILE"); see JobSpec+Store
///     [ingest]                        # or [compact]
///     inbox = "/var/spool/kvstore/inbox"
///     policy = "none+zstd3"
///
/// Relative paths are resolved against the folder the spec is in, so a spec means the
/// same thing whatever directory cron or systemd starts it from.
public enum JobSpec: Sendable {
    case ingest(IngestJob)
    case compact(CompactJob)

    /// `kvstore watch` as a spec.
    public struct IngestJob: Sendable {
        /// nil: the store of the environment (`$KVSTORE_CONFIG`, else `$KVSTORE_HOME`, else `~/.kvstore`).
        public var store: StoreSettings?
        public var layout: InboxLayout
        public var settings: WatchSettings
    }

    /// `kvstore compact` as a spec.
    public struct CompactJob: Sendable {
        public var store: StoreSettings?
        public var settings: CompactionSettings
    }

    static let topKeys = ["kind", "policies"] + storeKeys
    static let ingestKeys = ["inbox", "policy", "jobs", "inputs", "done", "poll", "once", "settle_seconds", "interval_seconds", "max_backoff_seconds"]
    static let compactKeys = ["budget", "cold_days", "cold_policy", "verify_sample", "grace_seconds", "dry_run"]

    /// Reads and checks a spec; every problem names the file, line and key.
    public static func load(path: String) throws(JobSpecError) -> JobSpec {
        try read(TOMLReader(path: path))
    }

    public static func parse(_ text: String, file: String) throws(JobSpecError) -> JobSpec {
        try read(TOMLReader(toml: TOMLSubset(parsing: text, file: file), file: file))
    }

    private static func read(_ reader: TOMLReader) throws(JobSpecError) -> JobSpec {
        let file = reader.file
        try reader.onlyKnown("", topKeys)
        // Named policies (docs/DESIGN.md, "Policy files") that `policy` and `cold_policy` may use.
        var policyFile: PolicyFile?
        if let policies = try reader.path("", "policies") { policyFile = try PolicyFile.load(path: policies) }
        let kind = try reader.string("", "kind", required: true)!
        let store = try storeSettings(reader)
        switch kind {
        case "ingest":
            try reader.onlyTables(["ingest"])
            try reader.onlyKnown("ingest", ingestKeys)
            let inbox = try reader.path("ingest", "inbox", required: true)!
            var settings = WatchSettings(policy: try reader.policy("ingest", "policy", in: policyFile) ?? Policy(reduction: .none, quantization: .none, codec: .zstd(level: 3)))
            settings.jobs = try reader.int("ingest", "jobs", min: 1) ?? 1
            settings.forcePolling = try reader.bool("ingest", "poll") ?? false
            settings.once = try reader.bool("ingest", "once") ?? false
            let b = WatchSettings.self
            settings.settle = try reader.double("ingest", "settle_seconds", min: b.settleRange.lowerBound, max: b.settleRange.upperBound) ?? settings.settle
            settings.interval = try reader.double("ingest", "interval_seconds", min: b.intervalRange.lowerBound, max: b.intervalRange.upperBound)
                ?? settings.interval
            settings.maxBackoff = try reader.double("ingest", "max_backoff_seconds", min: b.maxBackoffRange.lowerBound,
                                                    max: b.maxBackoffRange.upperBound) ?? settings.maxBackoff
            let inputs = try reader.string("ingest", "inputs") ?? "move"
            let doneDir = try reader.path("ingest", "done")
            let done: String?
            switch inputs {
            case "move": done = doneDir ?? InboxLayout.defaultDone(inbox)
            case "delete":
                if doneDir != nil {
                    throw .badValue(file: file, line: reader.line("ingest", "done"), key: "ingest.done", problem: "set, but ingest.inputs is \"delete\"")
                }
                done = nil
            default:
                throw .badValue(file: file, line: reader.line("ingest", "inputs"), key: "ingest.inputs", problem: "\"\(inputs)\" is not \"move\" or \"delete\"")
            }
            return .ingest(IngestJob(store: store, layout: InboxLayout(inbox: inbox, done: done), settings: settings))
        case "compact":
            try reader.onlyTables(["compact"])
            try reader.onlyKnown("compact", compactKeys)
            var settings = CompactionSettings()
            if let budget = try reader.string("compact", "budget") {
                guard let size = ByteSize(parsing: budget) else {
                    throw .badValue(file: file, line: reader.line("compact", "budget"), key: "compact.budget", problem: "\"\(budget)\" is not a byte count (e.g. \"500MB\", \"50GB\", \"1TiB\")")
                }
                settings.budget = size.bytes
            }
            settings.coldDays = try reader.double("compact", "cold_days", min: 0)
            settings.coldPolicy = try reader.policy("compact", "cold_policy", in: policyFile)
            if (settings.coldDays == nil) != (settings.coldPolicy == nil) {
                let present = settings.coldDays == nil ? "cold_policy" : "cold_days"
                throw .badValue(file: file, line: reader.line("compact", present), key: "compact.\(present)",
                                problem: "cold_days and cold_policy go together")
            }
            settings.verifySample = try reader.int("compact", "verify_sample", min: 0) ?? settings.verifySample
            settings.grace = try reader.double("compact", "grace_seconds", min: 0) ?? settings.grace
            settings.dryRun = try reader.bool("compact", "dry_run") ?? false
            return .compact(CompactJob(store: store, settings: settings))
        default:
            throw .badValue(file: file, line: reader.line("", "kind"), key: "kind", problem: "\"\(kind)\" is not \"ingest\" or \"compact\"")
        }
    }
}
