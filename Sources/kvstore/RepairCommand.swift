import ArgumentParser
import Foundation
import Pipeline
import SharedStore
import Store

struct RepairCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repair",
        abstract: "Rebuild index rows from the blobs' own pack headers (a lost, emptied or damaged index).",
        discussion: """
        Every blob that no row names is checked (content against its name, every layer decoded) \
        and indexed again from its header: id, model, spans, sources, policy, compression record, \
        fidelity. A damaged index file is moved aside to index.sqlite.damaged-<time> first. \
        Access statistics (last fetch, count) and pins are not in the blobs: rebuilt rows start \
        unpinned, last accessed when their blob was written. Exit 3 if some blob could not be indexed.
        """)

    @OptionGroup var options: StoreOptions

    @Flag(name: .long, help: "Say what would be rebuilt; change nothing.")
    var dryRun = false

    func run() throws {
        let store = try options.location.spec()
        try store.requirePresent()
        let (root, aside, lock) = dryRun ? (try store.open(binding: .skip), nil, nil)
            : try Repairer.open(sqliteIndex: store.sqliteIndexFile) { try store.open(binding: .adopt) }
        var report = try withExtendedLifetime(lock) { try Repairer(root: root).repair(dryRun: dryRun) }
        report.damagedIndexMovedTo = aside
        if options.json {
            Terminal.json(report)
        } else {
            if let aside { print("damaged index moved to \(aside); a new one was built") }
            let verb = dryRun ? "would be " : ""
            for id in report.recovered { print("recovered \(id)") }
            for id in report.relinked { print("relinked  \(id) (its row named a missing blob)") }
            for p in report.unrecoverable { print("UNRECOVERABLE \(p.blob): \(p.problem)") }
            for id in report.missingBlobs { print("MISSING   \(id): its blob is gone and was not found (kvstore rm it)") }
            for path in report.removed { print("removed   \(path): tombstoned by rm, eviction or re-pack; compact deletes it") }
            for path in report.unreferencedSegments { print("segment   \(path): a shared prefix no entry names; compact deletes it unless a part it keeps names it") }
            for stray in report.strays { print("SKIPPED   \(stray.path): \(stray.problem)") }
            for path in report.reshelved { print("moved     \(path) to its own fan-out folder") }
            print("\(report.blobs) blobs: \(report.alreadyIndexed) already indexed, \(report.recovered.count) \(verb)recovered, \(report.relinked.count) \(verb)relinked, \(report.superseded.count) superseded (left for compact), \(report.unrecoverable.count) unrecoverable; \(report.missingBlobs.count) rows without a blob")
        }
        if !report.unrecoverable.isEmpty || !report.missingBlobs.isEmpty { throw ExitCode(Exit.invalid) }
    }
}
