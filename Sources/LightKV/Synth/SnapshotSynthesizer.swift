/// Generates realistic synthetic kvsnap snapshots, deterministically for a seed.
///
/// Benchmarks and tests need KV caches with the statistics of real vision-language models
/// without running one. `docs/SYNTH.md` lists each property imitated and its measured value.
///
/// ```swift
/// let synth = try SnapshotSynthesizer(spec: try SynthSpec.preset(named: "llava"))
/// try synth.write { chunk in try handle.write(contentsOf: chunk) }  // ~340 MB, one layer in RAM
/// ```
///
/// Tokens get latent features (sink, text, or a `SynthScene` patch); each layer mixes them a
/// little more (deeper layers are smoother), projects them per kv head with `SynthModel`'s
/// weights, adds per-token noise, key outlier channels, the sink component and RoPE.
public struct SnapshotSynthesizer: Sendable {
    public let spec: SynthSpec
    public let spans: [Span]
    public let metadata: SnapshotMetadata
    public let layout: SafetensorsLayout
    /// One scene per image (or video).
    public let scenes: [SynthScene]
    /// First position of each image span.
    public let imageStarts: [Int]
    /// The image and object the prompt asks about.
    public let focusImage: Int
    public let focusObject: Int
    /// Positions of the focus object's tokens (all frames), ascending.
    public let focusPositions: [Int]
    /// Positions of the prompt queries (`prompt_query`) and probe queries (`probe_query`).
    public let promptQueryPositions: Range<Int>
    public let probeQueryPositions: Range<Int>

    let model: SynthModel
    let rope: Rope
    /// `[seqLen, latentDim]` layer-0 latent features.
    let baseFeatures: [Float]
    /// Per token, the identity its noise is drawn from: system text and images depend only on
    /// their own content, so two requests sharing a prefix or an image share those bytes.
    let tokenIdentity: [UInt64]
    /// The `input_ids` written after the layers.
    public let inputIDs: [Int64]

    /// Noise added to each pre-RoPE key entry at head_dim 128 (signal entries have std ≈ 1–1.5).
    static let keyNoise: Float = 0.35
    /// Key noise for this head size: a logit sums `headDim` products, so its signal-to-noise ratio
    /// grows with √headDim; scaling the noise by √(headDim/128) below 128 keeps small test
    /// heads as discriminative as real 128-wide ones.
    var keyNoise: Float { Self.keyNoise * min(1, (Float(spec.headDim) / 128).squareRoot()) }
    static let valueNoise: Float = 0.45
    /// Values of the sink token are scaled down (StreamingLLM/"massive activations": the sink
    /// absorbs attention but contributes little).
    static let sinkValueScale: Float = 0.08

    public init(spec: SynthSpec) throws(SynthError) {
        try spec.validate()
        self.spec = spec
        let dim = SynthModel.latentDim
        let model = SynthModel(model: spec.model, layers: spec.layers, kvHeads: spec.kvHeads, headDim: spec.headDim)
        self.model = model
        let seqLen = spec.seqLen
        rope = Rope(headDim: spec.headDim, theta: spec.ropeTheta, positions: seqLen + spec.probeQueryCount)

        // Spans: system | image (separator image)* | prompt.
        var spans: [Span] = [.text(0, spec.systemTokens, role: .system)]
        var starts: [Int] = []
        var scenes: [SynthScene] = []
        var next = spec.systemTokens
        for i in 0..<spec.images {
            if i > 0 {
                spans.append(.text(next, next + SynthSpec.separatorTokens, role: .other))
                next += SynthSpec.separatorTokens
            }
            let imageSeed = SynthRandom.mix([spec.effectiveImageSeed, UInt64(i), UInt64(spec.gridRows),
                                             UInt64(spec.gridCols), UInt64(spec.frames)])
            let source = "sha256:" + (0..<4).map { k in
                var wordRNG = SynthRandom(imageSeed, 0x5A256, UInt64(k))
                let word = wordRNG.next()
                let hex = String(word, radix: 16)
                return String(repeating: "0", count: 16 - hex.count) + hex
            }.joined()
            spans.append(spec.frames > 1
                ? .video(next, rows: spec.gridRows, cols: spec.gridCols, frames: spec.frames, source: source)
                : .image(next, rows: spec.gridRows, cols: spec.gridCols, source: source))
            starts.append(next)
            scenes.append(SynthScene(rows: spec.gridRows, cols: spec.gridCols, frames: spec.frames, seed: imageSeed))
            next += spec.tokensPerImage
        }
        spans.append(.text(next, next + spec.promptTokens, role: .prompt))
        self.spans = spans
        self.scenes = scenes
        imageStarts = starts

        // The object the prompt asks about: any object that is visible at all.
        var requestRNG = SynthRandom(spec.seed, 0xF0C5)
        let image = requestRNG.below(spec.images)
        let visible = scenes[image].objects.indices.filter { scenes[image].tokenCount(object: $0) > 0 }
        let object = visible.isEmpty ? 0 : visible[requestRNG.below(visible.count)]
        focusImage = image; focusObject = object
        focusPositions = scenes[image].labels.indices.filter { scenes[image].labels[$0] == Int16(object) }.map { starts[image] + $0 }
        promptQueryPositions = (seqLen - spec.promptQueryCount)..<seqLen
        probeQueryPositions = seqLen..<(seqLen + spec.probeQueryCount)

        // Token identities and layer-0 latent features.
        var identity = [UInt64](repeating: 0, count: seqLen)
        var features = [Float](repeating: 0, count: seqLen * dim)
        let systemSeed = SynthRandom.mix([SynthRandom.hash(spec.model), 0x5157E4])
        func textToken(_ t: Int, _ id: UInt64, focusWeight: Float) {
            identity[t] = id
            var rng = SynthRandom(id, 0x7E47)
            for d in 0..<dim { features[t * dim + d] = model.textModality[d] + 0.9 * rng.normal() }
            if focusWeight > 0 {
                let f = scenes[image].objects[object].feature
                for d in 0..<dim { features[t * dim + d] += focusWeight * f[d] }
            }
        }
        identity[0] = systemSeed
        for d in 0..<dim { features[d] = model.sinkFeature[d] }
        for t in 1..<spec.systemTokens { textToken(t, SynthRandom.mix([systemSeed, UInt64(t)]), focusWeight: 0) }
        for (i, start) in starts.enumerated() {
            if i > 0 { textToken(start - 1, SynthRandom.mix([0x5E9A, UInt64(i)]), focusWeight: 0) }
            let scene = scenes[i]
            let sceneSeed = SynthRandom.mix([spec.effectiveImageSeed, UInt64(i), 0x1D])
            for k in 0..<spec.tokensPerImage {
                let t = start + k
                identity[t] = SynthRandom.mix([sceneSeed, UInt64(k)])
                for d in 0..<dim { features[t * dim + d] = model.visionModality[d] + scene.features[k * dim + d] }
            }
        }
        let promptStart = seqLen - spec.promptTokens
        for j in 0..<spec.promptTokens {
            // About a third of the prompt's words name or describe the object asked about.
            let mentions = requestRNG.uniform() < 0.35
            textToken(promptStart + j, SynthRandom.mix([spec.seed, 0x960, UInt64(j)]), focusWeight: mentions ? 0.7 : 0)
        }
        baseFeatures = features
        tokenIdentity = identity
        // Token ids as a processor gives them: every image or video token is the one
        // placeholder id, text tokens are words of the vocabulary (from their identity), so
        // two requests about one image share their ids up to the prompt.
        var vision = [Bool](repeating: false, count: seqLen)
        for span in spans where span.kind != .text { for t in span.start..<span.end { vision[t] = true } }
        inputIDs = (0..<seqLen).map { t in
            vision[t] ? SynthSpec.imageTokenID : Int64(3 + identity[t] % UInt64(SynthSpec.imageTokenID - 3))
        }

        var entries: [SafetensorsLayout.Entry] = []
        for l in 0..<spec.layers {
            entries.append(.init("layers.\(l).key", spec.dtype, [spec.kvHeads, seqLen, spec.headDim]))
            entries.append(.init("layers.\(l).value", spec.dtype, [spec.kvHeads, seqLen, spec.headDim]))
            if spec.promptQueryCount > 0 {
                entries.append(.init("layers.\(l).prompt_query", spec.dtype, [spec.qHeads, spec.promptQueryCount, spec.headDim]))
            }
            if spec.probeQueryCount > 0 {
                entries.append(.init("layers.\(l).probe_query", spec.dtype, [spec.qHeads, spec.probeQueryCount, spec.headDim]))
            }
        }
        entries.append(.init(Snapshot.inputIDsName, .i64, [seqLen]))
        let key = "synth-\(spec.preset)-\(spec.seed)"
        let description = "preset=\(spec.preset) seed=\(spec.seed) image_seed=\(spec.effectiveImageSeed) focus=image\(image)/object\(object)"
        metadata = SnapshotMetadata(model: spec.model, spans: spans, key: key, extra: ["synth.spec": description])
        layout = SafetensorsLayout(entries: entries, metadata: metadata.raw)
    }

    /// Size of the file `write` produces.
    public var fileSize: Int { layout.fileSize }

    /// Streams the whole file to `sink`: the header, then every tensor in layout order, one
    /// chunk per tensor. Only one layer is held in memory at a time.
    public func write(_ sink: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try layout.header.withUnsafeBytes { try sink($0) }
        let largest = layout.entries.map(\.byteCount).max() ?? 0
        var buffer = [UInt8](repeating: 0, count: largest)
        for l in 0..<spec.layers {
            let tensors = layer(l)
            for floats in [tensors.keys, tensors.values, tensors.promptQueries, tensors.probeQueries] where !floats.isEmpty {
                let byteCount = floats.count * spec.dtype.size
                try buffer.withUnsafeMutableBytes { out in
                    floats.withUnsafeBufferPointer { Conversion.fromFloat($0.baseAddress!, count: $0.count, dtype: spec.dtype, into: out.baseAddress!) }
                    try sink(UnsafeRawBufferPointer(rebasing: out[0..<byteCount]))
                }
            }
        }
        try inputIDs.map(\.littleEndian).withUnsafeBytes { try sink($0) }
    }

    /// The whole file in memory (for tests and small snapshots).
    public func bytes() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(fileSize)
        write { out.append(contentsOf: $0) }
        return out
    }
}
