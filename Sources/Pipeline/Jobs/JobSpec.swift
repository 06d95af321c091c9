import Foundation
import Store
import LightKV

/// A job spec from `jobs/`: what `kvstore job run FILE` does (docs/JOBS.md).
///
///     kind = "ingest"                 # or "compact"
///     store = "/var/lib/kvstore"      # optional: else $KVSTORE_HOME, else ~/.kvstore
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
        public var store: String?
        public var layout: InboxLayout
        public var settings: WatchSettings
    }

    /// `kvstore compact` as a spec.
    public struct CompactJob: Sendable {
        public var store: String?
        public var settings: CompactionSettings
    }

    static let topKeys = ["kind", "store", "policies"]
    static let ingestKeys = ["inbox", "policy", "jobs", "inputs", "done", "poll", "once", "settle_seconds", "interval_seconds", "max_backoff_seconds"]
    static let compactKeys = ["budget", "cold_days", "cold_policy", "verify_sample", "grace_seconds", "dry_run"]

    /// Reads and checks a spec; every problem names the file, line and key.
    public static func load(path: String) throws(JobSpecError) -> JobSpec {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw .unreadable(file: path, problem: "cannot read: \(error.localizedDescription)")
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws(JobSpecError) -> JobSpec {
        let toml = try TOMLSubset(parsing: text, file: file)
        var reader = Reader(toml: toml, file: file, base: (file as NSString).deletingLastPathComponent)
        try reader.onlyKnown("", topKeys)
        // Named policies (docs/DESIGN.md, "Policy files") that `policy` and `cold_policy` may use.
        if let policies = try reader.path("", "policies") { reader.policyFile = try PolicyFile.load(path: policies) }
        let kind = try reader.string("", "kind", required: true)!
        let store = try reader.path("", "store")
        switch kind {
        case "ingest":
            for t in toml.tables.keys where t != "" && t != "ingest" {
                throw .unknownKey(file: file, line: toml.tableLines[t] ?? 0, key: "[\(t)]", known: ["[ingest]"])
            }
            try reader.onlyKnown("ingest", ingestKeys)
            let inbox = try reader.path("ingest", "inbox", required: true)!
            var settings = WatchSettings(policy: try reader.policy("ingest", "policy") ?? Policy(reduction: .none, quantization: .none, codec: .zstd(level: 3)))
            settings.jobs = try reader.int("ingest", "jobs", min: 1) ?? 1
            settings.forcePolling = try reader.bool("ingest", "poll") ?? false
            settings.once = try reader.bool("ingest", "once") ?? false
            settings.settle = try reader.double("ingest", "settle_seconds", min: 0) ?? settings.settle
            settings.interval = try reader.double("ingest", "interval_seconds", min: 0.001) ?? settings.interval
            settings.maxBackoff = try reader.double("ingest", "max_backoff_seconds", min: 0) ?? settings.maxBackoff
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
            for t in toml.tables.keys where t != "" && t != "compact" {
                throw .unknownKey(file: file, line: toml.tableLines[t] ?? 0, key: "[\(t)]", known: ["[compact]"])
            }
            try reader.onlyKnown("compact", compactKeys)
            var settings = CompactionSettings()
            if let budget = try reader.string("compact", "budget") {
                guard let size = ByteSize(parsing: budget) else {
                    throw .badValue(file: file, line: reader.line("compact", "budget"), key: "compact.budget", problem: "\"\(budget)\" is not a byte count (e.g. \"500MB\", \"50GB\", \"1TiB\")")
                }
                settings.budget = size.bytes
            }
            settings.coldDays = try reader.double("compact", "cold_days", min: 0)
            settings.coldPolicy = try reader.policy("compact", "cold_policy")
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

    /// Typed access to a parsed spec with errors that name file, line and key.
    private struct Reader {
        let toml: TOMLSubset
        let file: String
        let base: String
        var policyFile: PolicyFile?

        func line(_ table: String, _ key: String) -> Int { toml.tables[table]?[key]?.line ?? toml.tableLines[table] ?? 0 }

        func onlyKnown(_ table: String, _ keys: [String]) throws(JobSpecError) {
            for (key, entry) in (toml.tables[table] ?? [:]).sorted(by: { $0.value.line < $1.value.line }) where !keys.contains(key) {
                throw .unknownKey(file: file, line: entry.line, key: toml.qualified(table, key), known: keys.map { toml.qualified(table, $0) })
            }
        }

        private func entry(_ table: String, _ key: String, required: Bool) throws(JobSpecError) -> TOMLSubset.Entry? {
            if let e = toml.tables[table]?[key] { return e }
            if required { throw .missing(file: file, key: toml.qualified(table, key) + (toml.tables[table] == nil && !table.isEmpty ? " (no [\(table)] table)" : "")) }
            return nil
        }

        private func wrongType(_ table: String, _ key: String, _ e: TOMLSubset.Entry, _ wanted: String) -> JobSpecError {
            .badValue(file: file, line: e.line, key: toml.qualified(table, key), problem: "expected \(wanted), got \(e.value.typeName)")
        }

        func string(_ table: String, _ key: String, required: Bool = false) throws(JobSpecError) -> String? {
            guard let e = try entry(table, key, required: required) else { return nil }
            guard case .string(let s) = e.value else { throw wrongType(table, key, e, "a string") }
            return s
        }

        func path(_ table: String, _ key: String, required: Bool = false) throws(JobSpecError) -> String? {
            guard let s = try string(table, key, required: required) else { return nil }
            guard !s.isEmpty else { throw .badValue(file: file, line: line(table, key), key: toml.qualified(table, key), problem: "empty path") }
            return s.hasPrefix("/") || base.isEmpty ? s : base + "/" + s
        }

        func int(_ table: String, _ key: String, min: Int) throws(JobSpecError) -> Int? {
            guard let e = try entry(table, key, required: false) else { return nil }
            guard case .integer(let n) = e.value else { throw wrongType(table, key, e, "an integer") }
            guard n >= min else { throw .badValue(file: file, line: e.line, key: toml.qualified(table, key), problem: "\(n) is below \(min)") }
            return n
        }

        func double(_ table: String, _ key: String, min: Double) throws(JobSpecError) -> Double? {
            guard let e = try entry(table, key, required: false) else { return nil }
            let d: Double
            switch e.value {
            case .integer(let n): d = Double(n)
            case .float(let f): d = f
            default: throw wrongType(table, key, e, "a number")
            }
            guard d >= min else { throw .badValue(file: file, line: e.line, key: toml.qualified(table, key), problem: "\(d) is below \(min)") }
            return d
        }

        func bool(_ table: String, _ key: String) throws(JobSpecError) -> Bool? {
            guard let e = try entry(table, key, required: false) else { return nil }
            guard case .bool(let b) = e.value else { throw wrongType(table, key, e, "true or false") }
            return b
        }

        func policy(_ table: String, _ key: String) throws(JobSpecError) -> Policy? {
            guard let s = try string(table, key) else { return nil }
            do { return try Policy.resolve(s, in: policyFile) } catch {
                throw .badValue(file: file, line: line(table, key), key: toml.qualified(table, key), problem: "\(error)")
            }
        }
    }
}
