import ArgumentParser
import Foundation
import Pipeline
import Store

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check stored entries read back intact (exit 3 if not) and report orphan blobs.")

    @OptionGroup var options: StoreOptions

    @Argument(help: "Entry id or prefix; all entries when omitted.")
    var id: String?

    func run() throws {
        let root = try options.openForReading()
        let verifier = Verifier(root: root)
        let report = try verifier.verify(id.map { [try root.index.resolve($0)] })
        if options.json {
            Terminal.json(report)
        } else {
            for f in report.failures { print("FAIL \(f.id): \(f.problem)") }
            for o in report.orphans { print("orphan \(o) (no index row: compact adopts it if it reads back whole, keeps an entry's part whose segment is missing or damaged, and deletes a damaged one once past its grace period)") }
            for t in report.temporaryFiles { print("temporary \(t)") }
            print("\(report.checked) checked, \(report.failures.count) failed, \(report.orphans.count) orphans")
        }
        if !report.ok { throw ExitCode(Exit.invalid) }
    }
}

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Totals over the store.")

    @OptionGroup var options: StoreOptions

    func run() throws {
        let stats = try StoreStats(root: try options.openForReading())
        if options.json { Terminal.json(stats); return }
        print("entries      \(stats.entries) (\(stats.pinned) pinned)")
        print("input bytes  \(Terminal.bytes(stats.bytesIn))")
        print("stored bytes \(Terminal.bytes(stats.bytesOut)) (\(String(format: "%.2f×", stats.ratio)) smaller)")
        if stats.segments > 0 {
            print("segments     \(stats.segments) shared prefix\(stats.segments == 1 ? "" : "es") stored once, \(Terminal.bytes(stats.segmentBytes)) of the stored bytes")
        }
        print("blob files   \(stats.blobFiles), \(Terminal.bytes(stats.blobBytes)) on disk")
        print("index        \(Terminal.bytes(stats.indexBytes))")
        print("sources      \(stats.sources) distinct images/videos")
        for (m, n) in stats.models.sorted(by: { $0.key < $1.key }) { print("model        \(m): \(n)") }
        for (p, n) in stats.policies.sorted(by: { $0.key < $1.key }) { print("policy       \(p): \(n)") }
    }
}
