import ArgumentParser
import Foundation
import LightKV
import Pipeline
import Store

struct IngestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest", abstract: "Store kvsnap files; prints one id per file.")

    @OptionGroup var options: StoreOptions
    @OptionGroup var policyFile: PolicyFileOption

    @Option(name: .long, help: "Compression policy (see `kvstore policies`).")
    var policy = "none"

    @Option(name: .long, help: "Fidelity recorded when inputs carry probe_query: off, sample (every 8th layer and the last) or all.")
    var fidelity = "sample"

    @Argument(help: "kvsnap (.safetensors) files.")
    var files: [String]

    /// One file's result in `--json`: the fields of the HTTP API's `Ingested` (docs/openapi.yaml;
    /// `policy` is the stored entry's) and the entry as `show --json` prints it, or the error.
    struct Line: Encodable {
        var file: String
        var id: String?
        var alreadyStored: Bool?
        var bytesIn: Int?
        var bytesOut: Int?
        var policy: String?
        var milliseconds: Double?
        var entry: EntryDocument?
        var error: String?
    }

    func validate() throws {
        guard IngestFidelity.Mode(rawValue: fidelity) != nil else {
            throw ValidationError("--fidelity \(fidelity): expected off, sample or all")
        }
    }

    func run() throws {
        let policy = try policyFile.resolve(self.policy)
        let root = try options.openCreating()
        var ingestor = Ingestor(root: root)
        ingestor.fidelityMode = IngestFidelity.Mode(rawValue: fidelity)!
        var worst: Int32 = 0
        var lines: [Line] = []
        for file in files {
            do {
                let outcome = try ingestor.ingest(path: file, policy: policy)
                let r = outcome.record
                if outcome.alreadyStored && r.policy != policy.name {
                    Terminal.error("\(file): already stored as \(r.id) with policy \(r.policy), kept as it is (not \(policy.name)); to change it: kvstore repack \(r.id.prefix(12)) --policy \(policy.name)")
                }
                lines.append(Line(file: file, id: r.id, alreadyStored: outcome.alreadyStored, bytesIn: r.bytesIn, bytesOut: r.bytesOut,
                                  policy: r.policy, milliseconds: outcome.milliseconds,
                                  entry: options.json ? try EntryDocument.local(r, in: root) : nil))
                if !options.json {
                    print(r.id)
                    if Terminal.isInteractive || isatty(2) == 1 {
                        Terminal.note(String(format: "  %@: %@ -> %@ (%.2f×) %@ in %.0f ms", file, Terminal.bytes(r.bytesIn),
                                             Terminal.bytes(r.bytesOut), r.ratio, outcome.alreadyStored ? "already stored" : r.policy,
                                             outcome.milliseconds))
                    }
                }
            } catch {
                worst = max(worst, Exit.code(for: error))
                lines.append(Line(file: file, error: "\(error)"))
                Terminal.error("\(error)")
            }
        }
        if options.json { Terminal.json(lines) }
        if worst != 0 { throw ExitCode(worst) }
    }
}
