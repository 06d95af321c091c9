import ArgumentParser
import Foundation
import LightKV
import Pipeline
import Store

/// `kvstore repack`: gives stored entries another policy, keeping their ids.
struct RepackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repack",
        abstract: "Re-pack entries with another policy in place: same id, the blob swapped atomically.",
        discussion: """
        What compaction's cold re-pack does, for the entries named. The entry is decoded from \
        its pack (what `fetch` would give) and packed again, so a lossy policy's loss stays: \
        re-packing a lightkv+int8 entry with none stores that entry exactly, not the original \
        snapshot (ingest it again into an empty store for that). Prints old -> new bytes per entry.
        """)

    @OptionGroup var options: StoreOptions
    @OptionGroup var policyFile: PolicyFileOption

    @Option(name: .long, help: "The new compression policy (see `kvstore policies`).")
    var policy: String

    @Argument(help: "Entry ids or unique prefixes.")
    var ids: [String]

    /// One entry's result in `--json`.
    struct Line: Encodable {
        var id: String
        var oldPolicy: String
        var policy: String
        var oldBytes: Int
        var newBytes: Int
        /// `repacked`, `unchanged` (already this policy, or the same bytes).
        var outcome: String
    }

    func run() throws {
        let policy = try policyFile.resolve(self.policy)
        let root = try options.open()
        // Resolve every name first, so a typo changes nothing.
        let records = try ids.map { try root.index.resolve($0) }
        let repacker = EntryRepacker(root: root)
        var lines: [Line] = []
        for r in records {
            var line = Line(id: r.id, oldPolicy: r.policy, policy: policy.name, oldBytes: r.bytesOut, newBytes: r.bytesOut, outcome: "unchanged")
            if r.policy != policy.name {
                switch try repacker.repack(r, policy: policy) {
                case .swapped(let old, let new):
                    line.oldBytes = old
                    line.newBytes = new
                    line.outcome = "repacked"
                case .unchanged: break
                case .raced:
                    throw StoreError.io(path: root.path, operation: "repack \(r.id) (it changed while it was re-packed; nothing changed, run again)", errno: EAGAIN)
                }
            }
            lines.append(line)
            if !options.json {
                print(line.outcome == "repacked"
                      ? "repacked \(r.id): \(r.policy) -> \(policy.name), \(Terminal.bytes(line.oldBytes)) -> \(Terminal.bytes(line.newBytes))"
                      : "unchanged \(r.id): already \(policy.name), \(Terminal.bytes(line.newBytes))")
            }
        }
        if options.json { Terminal.json(lines) }
    }
}
