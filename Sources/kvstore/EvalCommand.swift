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

    @Flag(name: .long, help: "Questions about one prefix: the snapshots share it (kvstore synth --questions N); each is compressed guided by its own question, then every question is measured over that prefix with its own prompt exact: the same question and the new ones.")
    var cross = false

    @Flag(name: .long, help: "Sweep every method over retentions, with and without quantization: a table, and an SVG plot (--svg) of × smaller than F16 against relative error.")
    var frontier = false

    @Option(name: .long, help: "With --frontier: where to write the SVG plot.")
    var svg: String?

    @Option(name: .long, help: "With --frontier: methods, comma-separated (default: \(Frontier.Sweep.standard.methods.joined(separator: ","))).")
    var methods: String?

    @Option(name: .long, help: "With --frontier: retentions in percent, comma-separated (default: 5,10,20,35,55).")
    var retentions: String?

    @Option(name: .long, help: "With --frontier: quantizations, comma-separated, f16 for none (default: f16,int4g128m0t0r1).")
    var quantizations: String?

    func validate() throws {
        if frontier {
            guard policy.isEmpty else { throw ValidationError("--frontier sweeps its own policies; use --methods, --retentions, --quantizations instead of --policy") }
            guard svg != nil else { throw ValidationError("--frontier needs --svg FILE: where to write the plot") }
            _ = try sweep()
        } else {
            guard !policy.isEmpty else { throw ValidationError("give at least one --policy (or --frontier)") }
            guard svg == nil, methods == nil, retentions == nil, quantizations == nil else {
                throw ValidationError("--svg, --methods, --retentions and --quantizations go with --frontier")
            }
        }
        if cross && frontier { throw ValidationError("--cross and --frontier exclude each other") }
        if cross && perLayer { throw ValidationError("--cross reports means over layers; --per-layer goes with plain eval") }
        guard holdOut >= 1 else { throw ValidationError("--hold-out must be at least 1, got \(holdOut)") }
    }

    /// The sweep the options ask for, every policy in it checked to parse.
    func sweep() throws -> Frontier.Sweep {
        let d = Frontier.Sweep.standard
        func list(_ text: String?, _ fallback: [String]) -> [String] {
            text.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } } ?? fallback
        }
        var percents: [Int] = []
        for r in list(retentions, d.retentions.map(String.init)) {
            guard let p = Int(r), (1...100).contains(p) else { throw ValidationError("--retentions: \"\(r)\" is not a percentage 1 to 100") }
            percents.append(p)
        }
        let s = Frontier.Sweep(methods: list(methods, d.methods), retentions: percents, quantizations: list(quantizations, d.quantizations))
        for (_, p) in s.policies {
            do { _ = try Policy(parsing: p) } catch { throw ValidationError("\(error)") }
        }
        return s
    }

    struct Result: Encodable {
        var snapshot: String
        var evaluations: [PolicyEvaluation]
    }

    func run() throws {
        if frontier { return try runFrontier() }
        if cross { return try runCross() }
        let policies = try policy.map { try policyFile.resolve($0) }
        var results: [Result] = []
        for path in snapshots {
            let evaluations: [PolicyEvaluation] = try Self.withSnapshot(path) { snapshot in
                try policies.map { p in
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

    func runCross() throws {
        let policies = try policy.map { try policyFile.resolve($0) }
        // Every snapshot is held open (mapped) while they are compared.
        var files: [Data] = []
        for path in snapshots {
            do { files.append(try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)) } catch {
                Terminal.error("\(path): cannot read: \(error.localizedDescription)")
                throw ExitCode(FileManager.default.fileExists(atPath: path) ? Exit.invalid : Exit.notFound)
            }
        }
        let results: [CrossEvaluation] = try Self.withSnapshots(files, paths: snapshots) { parsed in
            try policies.map { p in
                do { return try CrossEvaluation(snapshots: parsed, policy: p) } catch {
                    Terminal.error((error as? CrossEvaluationError)?.description(naming: snapshots) ?? "\(error)")
                    if case .evaluation(let e)? = error as? CrossEvaluationError, Self.isPolicyRefusal(e) { throw ExitCode(Exit.usage) }
                    if case .tooFew? = error as? CrossEvaluationError { throw ExitCode(Exit.usage) }
                    throw ExitCode(Exit.invalid)
                }
            }
        }
        if json { Terminal.json(results); return }
        print("\(snapshots.count) questions about one prefix; relative attention-output error (proportional), mean over layers and questions")
        Terminal.table(["policy", "prefix vision kept", "same question", "new question", "new / same"], results.map { r in
            [r.policy, Self.percent(r.visionRetention), Self.fixed(r.same.relativeError), Self.fixed(r.new.relativeError),
             r.ratio.isFinite ? String(format: "%.2f×", r.ratio) : "-"]
        })
    }

    /// Parses every mapped file as a snapshot (exit 3 naming the bad one) and hands them to `body`.
    static func withSnapshots<T>(_ files: [Data], paths: [String], parsed: [Snapshot] = [], _ body: ([Snapshot]) throws -> T) throws -> T {
        guard parsed.count < files.count else { return try body(parsed) }
        let i = parsed.count
        return try files[i].withUnsafeBytes { raw in
            let snapshot: Snapshot
            do { snapshot = try Snapshot(bytes: raw) } catch {
                Terminal.error("\(paths[i]): \(error)")
                throw ExitCode(Exit.invalid)
            }
            return try withSnapshots(files, paths: paths, parsed: parsed + [snapshot], body)
        }
    }

    /// Reads a snapshot, or exits with the documented code naming the file.
    static func withSnapshot<T>(_ path: String, _ body: (Snapshot) throws -> T) throws -> T {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            Terminal.error("\(path): cannot read: \(error.localizedDescription)")
            throw ExitCode(FileManager.default.fileExists(atPath: path) ? Exit.invalid : Exit.notFound)
        }
        return try data.withUnsafeBytes { raw in
            let snapshot: Snapshot
            do { snapshot = try Snapshot(bytes: raw) } catch {
                Terminal.error("\(path): \(error)")
                throw ExitCode(Exit.invalid)
            }
            return try body(snapshot)
        }
    }

    struct FrontierResult: Encodable {
        var snapshot: String
        var points: [Frontier.Point]
    }

    func runFrontier() throws {
        let sweep = try sweep()
        var panels: [(title: String, frontier: Frontier)] = []
        for path in snapshots {
            let f: Frontier = try Self.withSnapshot(path) { snapshot in
                do {
                    return try Frontier(snapshot: snapshot, sweep: sweep) { done, total in
                        if Terminal.isInteractive { Terminal.note("\(path): \(done)/\(total) policies") }
                    }
                } catch {
                    Terminal.error("\(path): \(error)")
                    if case .evaluation(_, let e)? = error as? FrontierError, !Self.isPolicyRefusal(e) { throw ExitCode(Exit.invalid) }
                    throw ExitCode(Exit.usage)
                }
            }
            panels.append((URL(fileURLWithPath: path).lastPathComponent, f))
        }
        let svgPath = svg!
        do {
            try Data(FrontierPlot.svg(panels, targetError: 0.06, targetTimes: 10).utf8)
                .write(to: URL(fileURLWithPath: svgPath), options: .atomic)
        } catch {
            Terminal.error("\(svgPath): cannot write the plot: \(error.localizedDescription)")
            throw ExitCode(Exit.invalid)
        }
        if json {
            Terminal.json(panels.map { FrontierResult(snapshot: $0.title, points: $0.frontier.points) })
            return
        }
        print("| snapshot | curve | policy | asked | vision kept | × smaller than F16 | rel err (prop) |")
        print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
        for (title, f) in panels {
            for p in f.points {
                print("| \(title) | \(p.curve) | \(p.policy) | \(p.requestedRetention.map(Self.percent) ?? "-") | \(Self.percent(p.visionRetention)) "
                      + "| \(String(format: "%.1f", p.timesSmaller))× | \(Self.fixed(p.relativeError)) |")
            }
        }
        Terminal.note("plot: \(svgPath)")
    }

    static func isPolicyRefusal(_ error: Error) -> Bool {
        if case .policy? = error as? EvaluationError { return true }
        return false
    }

    static func fixed(_ x: Double) -> String { String(format: "%.4f", x) }
    static func percent(_ x: Double) -> String { String(format: "%.1f%%", 100 * x) }
}
