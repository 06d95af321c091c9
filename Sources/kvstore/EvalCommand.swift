import ArgumentParser
import Foundation
import LightKV
import Pipeline

/// `kvstore eval`: how much each policy changes what the cache gives the probe queries.
///
/// Parsing and printing only; the measuring is `PolicyEvaluation` in LightKV, the same code
/// ingest can record figures with.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Measure attention-output fidelity of compression policies on snapshots, in memory.",
        discussion: """
        For every layer, the probe queries' attention outputs over the input cache are compared with
        those over the compressed, encoded and decoded cache: mean relative L2 error ‖o'−o‖/‖o‖ and
        mean cosine, with proportional attention (log(size) added to merged entries' logits) and
        without. Snapshots without probe_query hold out their last prompt queries as probes
        (withheld from compression). Nothing is written.
        """)

    @OptionGroup var policyFile: PolicyFileOption

    @Argument(help: "kvsnap files to evaluate.")
    var snapshots: [String]

    @Option(name: .long, help: "A policy to evaluate (repeatable), e.g. lightkv, uniform55, lightkv35+int8.")
    var policy: [String] = []

    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false

    @Flag(name: .customLong("per-layer"), help: "Also show every layer's figures.")
    var perLayer = false

    @Option(name: .customLong("hold-out"), help: "Prompt queries held out as probes when a snapshot has no probe_query.")
    var holdOut = 4

    func validate() throws {
        guard !policy.isEmpty else { throw ValidationError("give at least one --policy") }
        guard holdOut >= 1 else { throw ValidationError("--hold-out must be at least 1, got \(holdOut)") }
    }

    struct Result: Encodable {
        var snapshot: String
        var evaluations: [PolicyEvaluation]
    }

    func run() throws {
        let policies = try policy.map { try policyFile.resolve($0) }
        var results: [Result] = []
        for path in snapshots {
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
                Terminal.error("\(path): cannot read: \(error.localizedDescription)")
                throw ExitCode(FileManager.default.fileExists(atPath: path) ? Exit.invalid : Exit.notFound)
            }
            let evaluations: [PolicyEvaluation] = try data.withUnsafeBytes { raw in
                let snapshot: Snapshot
                do { snapshot = try Snapshot(bytes: raw) } catch {
                    Terminal.error("\(path): \(error)")
                    throw ExitCode(Exit.invalid)
                }
                return try policies.map { p in
                    do { return try PolicyEvaluation(snapshot: snapshot, policy: p, holdOut: holdOut) } catch {
                        Terminal.error("\(path): \(error)")
                        throw ExitCode(Self.isPolicyRefusal(error) ? Exit.usage : Exit.invalid)
                    }
                }
            }
            results.append(Result(snapshot: path, evaluations: evaluations))
        }
        if json {
            Terminal.json(results)
            return
        }
        for (n, r) in results.enumerated() {
            if n > 0 { print("") }
            print("\(r.snapshot)  (probes: \(r.evaluations.first?.probes ?? "-"))")
            Terminal.table(
                ["policy", "asked", "vision kept", "rel err (prop)", "cos (prop)", "rel err (plain)", "cos (plain)", "bytes", "of input", "encode s", "reduce s"],
                r.evaluations.map { e in
                    let o = e.overall
                    return [e.policy, e.requestedRetention.map(Self.percent) ?? "-", Self.percent(o.visionRetention), Self.fixed(o.proportional.relativeError),
                            Self.fixed(o.proportional.cosine), Self.fixed(o.plain.relativeError), Self.fixed(o.plain.cosine),
                            Terminal.bytes(o.encodedBytes), Self.percent(Double(o.encodedBytes) / Double(max(o.inputBytes, 1))),
                            String(format: "%.3f", e.encodeSeconds), String(format: "%.3f", e.reduceSeconds)]
                })
            guard perLayer else { continue }
            for e in r.evaluations {
                print("")
                print("\(e.policy), per layer:")
                Terminal.table(
                    ["layer", "entries", "vision kept", "rel err (prop)", "cos (prop)", "rel err (plain)", "cos (plain)", "bytes"],
                    e.layers.map { l in
                        [String(l.layer), String(l.entries), Self.percent(l.visionRetention), Self.fixed(l.proportional.relativeError),
                         Self.fixed(l.proportional.cosine), Self.fixed(l.plain.relativeError), Self.fixed(l.plain.cosine),
                         Terminal.bytes(l.encodedBytes)]
                    })
            }
        }
    }

    static func isPolicyRefusal(_ error: Error) -> Bool {
        if case .policy? = error as? EvaluationError { return true }
        return false
    }

    static func fixed(_ x: Double) -> String { String(format: "%.4f", x) }
    static func percent(_ x: Double) -> String { String(format: "%.1f%%", 100 * x) }
}
