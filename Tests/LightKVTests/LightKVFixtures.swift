import LightKV

/// A seeded generator, so every random test input is the same on every run.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func gaussian() -> Float { Float.random(in: -1...1, using: &self) + Float.random(in: -1...1, using: &self) }
}

/// Small random caches with a system prompt, one or more vision spans and a user prompt.
struct Fixture {
    var spans: [Span]
    var seqLen: Int
    var kvHeads = 2, qHeads = 4, headDim = 8, vHeadDim = 6, layerCount = 6
    var prompts = 3
    var rng = SeededRandom(1)

    /// System text, a `rows×cols` image, and prompt text.
    static func image(rows: Int, cols: Int, seed: UInt64 = 1) -> Fixture {
        let spans: [Span] = [.text(0, 3, role: .system), .image(3, rows: rows, cols: cols), .text(3 + rows * cols, 8 + rows * cols, role: .prompt)]
        return Fixture(spans: spans, seqLen: 8 + rows * cols, rng: SeededRandom(seed))
    }

    /// System text, an image, a 2-frame video and prompt text.
    static func mixed(seed: UInt64 = 1) -> Fixture {
        let spans: [Span] = [.text(0, 2, role: .system), .image(2, rows: 5, cols: 7), .text(37, 39),
                             .video(39, rows: 4, cols: 6, frames: 2), .text(87, 92, role: .prompt)]
        return Fixture(spans: spans, seqLen: 92, rng: SeededRandom(seed))
    }

    mutating func floats(_ n: Int) -> [Float] { (0..<n).map { _ in rng.gaussian() } }

    mutating func layer() -> KVLayer {
        KVLayer(kvHeads: kvHeads, headDim: headDim, vHeadDim: vHeadDim,
                keys: floats(kvHeads * seqLen * headDim), values: floats(kvHeads * seqLen * vHeadDim),
                positions: (0..<Int32(seqLen)).map { $0 }, sizes: [Int32](repeating: 1, count: seqLen))
    }

    mutating func queries(_ count: Int) -> QueryBlock {
        QueryBlock(heads: qHeads, count: count, headDim: headDim, values: floats(qHeads * count * headDim))
    }

    func context(_ i: Int, _ q: QueryBlock?) -> LayerContext {
        LayerContext(index: i, layerCount: layerCount, spans: spans, seqLen: seqLen, promptQuery: q)
    }

    /// Runs `compressor` over `layerCount` random layers; returns inputs and outputs.
    /// Compressors that divide a budget over layers survey every layer first, as
    /// `SnapshotEncoder` has them do.
    mutating func run(_ compressor: inout some CacheCompressor, withQueries: Bool = true) -> [(KVLayer, KVLayer)] {
        let inputs = (0..<layerCount).map { i in (layer(), withQueries ? queries(prompts) : nil) }
        for _ in 0..<compressor.surveyPasses {
            for (i, (input, q)) in inputs.enumerated() { compressor.survey(input, context: context(i, q)) }
        }
        return inputs.enumerated().map { i, pair in (pair.0, compressor.compress(pair.0, context: context(i, pair.1))) }
    }

    /// A kvsnap file (F32) of random layers with prompt and, optionally, probe queries.
    mutating func snapshotBytes(probes: Int?) -> [UInt8] {
        var entries: [SafetensorsLayout.Entry] = []
        var data: [Float] = []
        for i in 0..<layerCount {
            let l = layer()
            entries.append(.init("layers.\(i).key", .f32, [kvHeads, seqLen, headDim])); data += l.keys
            entries.append(.init("layers.\(i).value", .f32, [kvHeads, seqLen, vHeadDim])); data += l.values
            entries.append(.init("layers.\(i).prompt_query", .f32, [qHeads, prompts, headDim])); data += queries(prompts).values
            if let p = probes {
                entries.append(.init("layers.\(i).probe_query", .f32, [qHeads, p, headDim])); data += queries(p).values
            }
        }
        let meta = SnapshotMetadata(model: "test/model", spans: spans)
        let layout = SafetensorsLayout(entries: entries, metadata: meta.raw)
        return layout.header + data.withUnsafeBytes { Array($0) }
    }
}

/// Row `j` of head `h` of a `[heads, n, dim]` buffer.
func row(_ buffer: [Float], head h: Int, entry j: Int, count n: Int, dim: Int) -> [Float] {
    Array(buffer[(h * n + j) * dim ..< (h * n + j + 1) * dim])
}

func spec(_ token: String) throws -> ReductionSpec {
    guard let r = try ReductionSpec(token: token) else { throw PolicyError.badPart(part: token, in: token, why: "not a reduction") }
    return r
}

/// `token`'s reduction as its method is published: without the dense-span guard, which would
/// keep whole every span of the fixtures' random keys (docs/design/dense.md;
/// `DenseSpanGuardTests` tests the guard).
func published(_ token: String) throws -> ReductionSpec {
    try spec(token.contains("dense=") ? token : token + ":dense=0")
}
