/// The synthetic "weights" of a model: what turns latent token features into keys and values.
///
/// Everything here is seeded by the model name and shape only, never by the request, so all
/// snapshots of one model share projections, outlier channels and sink direction, exactly as
/// real caches from one checkpoint do.
public struct SynthModel: Sendable {
    /// Width of the latent token features. Real hidden states are 3–4k wide, but keys of one head
    /// are close to low rank; 32 latent dimensions keep generation fast and the structure visible.
    public static let latentDim = 32

    /// Projections of one kv head at one layer.
    public struct Head: Sendable {
        /// `[latentDim, headDim]` latent → pre-RoPE key.
        public var keyProjection: [Float]
        /// `[latentDim, headDim]` latent → value.
        public var valueProjection: [Float]
        /// Pre-RoPE key bias: zero except for a few large outlier channels (KIVI: keys have
        /// fixed outlier channels, values do not).
        public var keyBias: [Float]
        /// The channels carrying outliers.
        public var outlierChannels: [Int]
        /// Unit direction shared by the sink key and every query of this head (StreamingLLM).
        public var sinkDirection: [Float]
    }

    public let layers: Int
    public let kvHeads: Int
    public let headDim: Int
    let seed: UInt64
    /// Latent offset of every vision token (vision tokens form their own region of key space).
    public let visionModality: [Float]
    /// Latent offset of every text token.
    public let textModality: [Float]
    /// Latent feature of the first (sink) token, e.g. `<s>`.
    public let sinkFeature: [Float]

    public init(model: String, layers: Int, kvHeads: Int, headDim: Int) {
        self.layers = layers; self.kvHeads = kvHeads; self.headDim = headDim
        seed = SynthRandom.mix([SynthRandom.hash(model), UInt64(layers), UInt64(kvHeads), UInt64(headDim)])
        var rng = SynthRandom(seed, 0x40DA1)
        visionModality = rng.normals(Self.latentDim, scale: 1.0)
        textModality = rng.normals(Self.latentDim, scale: 1.0)
        sinkFeature = rng.normals(Self.latentDim, scale: 1.0)
    }

    /// Fraction of the way from the first to the last layer, 0...1.
    public func depth(_ layer: Int) -> Float { layers > 1 ? Float(layer) / Float(layers - 1) : 0 }

    /// RoPE pair index of channel `d` (channels `i` and `i + headDim/2` rotate together).
    @inline(__always) func pair(_ d: Int) -> Int { d % (headDim / 2) }

    /// Weight of channel `d` in the semantic projections: low-frequency RoPE pairs carry more
    /// content and high-frequency pairs more position (Barbero et al. 2024, "Round and round we
    /// go"), which is also why a query can match an object's keys at many relative distances.
    func semanticWeight(_ d: Int) -> Float {
        let half = headDim / 2
        return 0.35 + 1.3 * Float(pair(d)) / Float(max(half - 1, 1))
    }

    /// The projections of kv head `head` at `layer`.
    public func head(layer: Int, head: Int) -> Head {
        var rng = SynthRandom(seed, UInt64(layer), UInt64(head), 0x4EAD)
        let dim = Self.latentDim
        let scale = 1 / Float(dim).squareRoot()
        var wk = [Float](repeating: 0, count: dim * headDim)
        var wv = [Float](repeating: 0, count: dim * headDim)
        for i in 0..<dim {
            for d in 0..<headDim {
                wk[i * headDim + d] = rng.normal() * scale * semanticWeight(d)
                wv[i * headDim + d] = rng.normal() * scale * 0.8
            }
        }
        // 2–4 outlier channels among the slowest-rotating quarter of pairs, so they survive RoPE
        // as near-constant channels, with magnitudes 6–12× the typical key entry.
        let half = headDim / 2
        let slow = max(1, half / 4)
        var bias = [Float](repeating: 0, count: headDim)
        var channels: [Int] = []
        let outliers = min(2 + rng.below(3), slow * 2)
        while channels.count < outliers {
            let c = half - 1 - rng.below(slow) + (rng.below(2) == 0 ? 0 : half)
            if channels.contains(c) { continue }
            channels.append(c)
            bias[c] = rng.uniform(150...350) * (rng.below(2) == 0 ? 1 : -1)
        }
        channels.sort()
        // The sink direction lives in slow pairs too (a sink key at position 0 must still match
        // queries hundreds of positions later), avoiding the outlier channels.
        var sink = [Float](repeating: 0, count: headDim)
        for d in 0..<headDim where pair(d) >= half / 2 && !channels.contains(d) { sink[d] = rng.normal() }
        let norm = sink.reduce(0) { $0 + $1 * $1 }.squareRoot()
        if norm > 0 { for d in sink.indices { sink[d] /= norm } }
        return Head(keyProjection: wk, valueProjection: wv, keyBias: bias, outlierChannels: channels, sinkDirection: sink)
    }
}
