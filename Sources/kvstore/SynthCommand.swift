import ArgumentParser
import Foundation
import LightKV

/// `kvstore synth`: writes realistic synthetic kvsnap snapshots for tests, demos and benchmarks.
///
/// ```
/// kvstore synth --preset llava --seed 3 -o llava.safetensors
/// kvstore synth --preset qwen --count 10 --same-image -o snaps/
/// ```
struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Write synthetic kvsnap snapshots with the statistics of real vision-language KV caches.",
        discussion: "Presets: \(SynthSpec.presetNames.joined(separator: ", ")). Every shape flag overrides the preset. See docs/SYNTH.md.")

    @Option(help: "Preset to start from: \(SynthSpec.presetNames.joined(separator: ", ")).")
    var preset = "llava"
    @Option(help: "Number of layers.") var layers: Int?
    @Option(name: .customLong("kv-heads"), help: "Key/value heads.") var kvHeads: Int?
    @Option(name: .customLong("q-heads"), help: "Query heads (a multiple of --kv-heads).") var qHeads: Int?
    @Option(name: .customLong("head-dim"), help: "Head dimension (even).") var headDim: Int?
    @Option(help: "Token grid of one image or frame, ROWSxCOLS (e.g. 24x24).") var grid: String?
    @Option(help: "Frames per video; 1 writes an image.") var frames: Int?
    @Option(help: "Number of images (or videos).") var images: Int?
    @Option(name: .customLong("text"), help: "Prompt tokens after the image(s).") var promptTokens: Int?
    @Option(name: .customLong("system"), help: "System-prefix tokens before the image(s); the first is the attention sink.") var systemTokens: Int?
    @Option(name: .customLong("prompt-queries"), help: "Prompt queries written (the last m prompt tokens).") var promptQueries: Int?
    @Option(name: .customLong("probe-queries"), help: "Probe queries written (tokens decoded after the prompt).") var probeQueries: Int?
    @Option(help: "Element type: f16, bf16 or f32.") var dtype = "f16"
    @Option(help: "Seed of the first snapshot; later ones use seed+1, seed+2, ...") var seed: UInt64 = 0
    @Option(help: "Number of snapshots to write; more than 1 makes -o a directory.") var count = 1
    @Flag(name: .customLong("same-image"), help: "Reuse the first snapshot's image in every snapshot (repeated-image demos).")
    var sameImage = false
    @Option(help: "Write N snapshots that share one prefix (system text and image, bit-identical, input_ids too) and differ in their prompt: N questions about one image (sets --count N and --same-image).")
    var questions: Int?
    @Flag(help: "Print realism statistics of each snapshot's layers (slower).") var stats = false
    @Option(name: .shortAndLong, help: "Output file, or directory when --count > 1 (default: synth-PRESET-SEED.safetensors).")
    var output: String?

    /// The spec of the `index`-th snapshot, with every flag applied and checked.
    func spec(index: Int) throws -> SynthSpec {
        var spec: SynthSpec
        do { spec = try SynthSpec.preset(named: preset) } catch {
            throw ValidationError("--preset \(preset): unknown preset (known: \(SynthSpec.presetNames.joined(separator: ", ")))")
        }
        let presetGroup = spec.qHeads / spec.kvHeads
        func positive(_ value: Int?, _ flag: String, minimum: Int = 1) throws -> Int? {
            guard let value else { return nil }
            guard value >= minimum else { throw ValidationError("--\(flag) \(value): must be at least \(minimum)") }
            return value
        }
        if let v = try positive(layers, "layers") { spec.layers = v }
        if let v = try positive(kvHeads, "kv-heads") { spec.kvHeads = v }
        // Without --q-heads, keep the preset's grouped-query ratio when --kv-heads changes.
        if let v = try positive(qHeads, "q-heads") { spec.qHeads = v } else { spec.qHeads = spec.kvHeads * presetGroup }
        if let v = try positive(headDim, "head-dim", minimum: 2) { spec.headDim = v }
        if let grid {
            let parts = grid.lowercased().split(separator: "x", omittingEmptySubsequences: false)
            guard parts.count == 2, let r = Int(parts[0]), let c = Int(parts[1]), r > 0, c > 0 else {
                throw ValidationError("--grid \(grid): expected ROWSxCOLS with positive integers, e.g. 24x24")
            }
            spec.gridRows = r; spec.gridCols = c
        }
        if let v = try positive(frames, "frames") { spec.frames = v }
        if let v = try positive(images, "images") { spec.images = v }
        if let v = try positive(promptTokens, "text") { spec.promptTokens = v }
        if let v = try positive(systemTokens, "system") { spec.systemTokens = v }
        if let v = try positive(promptQueries, "prompt-queries", minimum: 0) { spec.promptQueryCount = v }
        if promptQueries == nil { spec.promptQueryCount = min(spec.promptQueryCount, spec.promptTokens) }
        if let v = try positive(probeQueries, "probe-queries", minimum: 0) { spec.probeQueryCount = v }
        guard let type = DType(userName: dtype), type.isFloat else {
            throw ValidationError("--dtype \(dtype): expected f16, bf16 or f32")
        }
        spec.dtype = type
        spec.seed = seed &+ UInt64(index)
        if sameImage || questions != nil { spec.imageSeed = seed }
        do { try spec.validate() } catch {
            throw ValidationError("\(Self.flag(for: error)): \(error)")
        }
        return spec
    }

    /// The command-line flag behind a spec field, for error messages.
    static func flag(for error: SynthError) -> String {
        guard case .badField(let field, let value, _) = error else { return "--preset" }
        let flags = ["layers": "--layers", "kvHeads": "--kv-heads", "qHeads": "--q-heads", "headDim": "--head-dim",
                     "gridRows": "--grid", "gridCols": "--grid", "frames": "--frames", "images": "--images",
                     "systemTokens": "--system", "promptTokens": "--text", "promptQueryCount": "--prompt-queries",
                     "probeQueryCount": "--probe-queries"]
        return "\(flags[field] ?? field) \(value)"
    }

    /// Snapshots to write: `--questions`, else `--count`.
    var total: Int { questions ?? count }

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count \(count): must be at least 1") }
        if let questions {
            guard questions >= 1 else { throw ValidationError("--questions \(questions): must be at least 1") }
            guard count == 1 else { throw ValidationError("--questions sets the count; give --questions or --count, not both") }
        }
        _ = try spec(index: 0)
    }

    /// Where the `index`-th snapshot goes.
    func path(index: Int, spec: SynthSpec) -> String {
        if total == 1 { return output ?? "synth-\(spec.preset)-\(spec.seed).safetensors" }
        let directory = output ?? "synth-\(preset)"
        let number = String(index + 1)
        return directory + "/synth-\(preset)-" + String(repeating: "0", count: max(0, 4 - number.count)) + number + ".safetensors"
    }

    func run() throws {
        if total > 1 {
            try FileManager.default.createDirectory(atPath: output ?? "synth-\(preset)", withIntermediateDirectories: true)
        }
        for index in 0..<total {
            let spec = try spec(index: index)
            let synth = try SnapshotSynthesizer(spec: spec)
            let path = path(index: index, spec: spec)
            let started = Date()
            try Self.write(synth, to: path)
            let seconds = Date().timeIntervalSince(started)
            print(String(format: "%@  %d layers, seq_len %d, %.1f MB, %.2f s", path, spec.layers, spec.seqLen,
                         Double(synth.fileSize) / 1e6, seconds))
            if stats { try printStatistics(path: path, synth: synth) }
        }
    }

    /// Streams the snapshot to `path.tmp`, then renames it into place, so a reader never sees a
    /// half-written file under the final name.
    static func write(_ synth: SnapshotSynthesizer, to path: String) throws {
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: nil) else {
            throw ValidationError("-o \(path): cannot create \(temporary)")
        }
        do {
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: temporary))
            defer { try? handle.close() }
            try synth.write { chunk in try handle.write(contentsOf: chunk) }
            try handle.synchronize()
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(atPath: temporary)
            throw ValidationError("-o \(path): cannot rename \(temporary) into place: \(reason)")
        }
    }

    private func printStatistics(path: String, synth: SnapshotSynthesizer) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        try data.withUnsafeBytes { raw in
            let snapshot = try Snapshot(bytes: raw)
            let layers = Set([0, snapshot.layerCount / 2, snapshot.layerCount - 1]).sorted()
            for l in layers { print("  " + SynthStatistics(snapshot: snapshot, layer: l, focus: synth.focusPositions).description) }
        }
    }
}
