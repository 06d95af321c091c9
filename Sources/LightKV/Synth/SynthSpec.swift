/// The shape and content of one synthetic kvsnap snapshot.
///
/// Start from a preset and override what you need:
///
/// ```swift
/// var spec = try SynthSpec.preset(named: "llava")
/// spec.seed = 7
/// let bytes = try SnapshotSynthesizer(spec: spec).bytes()
/// ```
///
/// The sequence is `system text | image(s) or video | prompt text`, as a chat template lays out a
/// single-turn vision request. The first system token is the attention sink.
public struct SynthSpec: Sendable, Equatable {
    /// The preset this spec started from; used in `kvsnap.key` and file names.
    public var preset: String
    /// Written as `kvsnap.model`; also seeds the synthetic "model weights" (projections, outlier
    /// channels, sink direction), so every snapshot of one model shares them, as real ones do.
    public var model: String
    public var layers: Int
    public var kvHeads: Int
    /// Query heads; a multiple of `kvHeads` (grouped-query attention).
    public var qHeads: Int
    /// Key and value head dimension (`v_head_dim == head_dim`).
    public var headDim: Int
    public var dtype: DType
    /// Token grid of one image or one video frame.
    public var gridRows: Int
    public var gridCols: Int
    /// 1 writes image spans; more writes video spans of that many frames.
    public var frames: Int
    /// Number of images (or videos), laid out one after the other.
    public var images: Int
    /// System-prefix tokens before the first image; the first is the attention sink.
    public var systemTokens: Int
    /// Prompt tokens after the image(s).
    public var promptTokens: Int
    /// `m`: the last `m` prompt tokens' queries are written as `prompt_query`.
    public var promptQueryCount: Int
    /// `p`: queries of `p` tokens decoded after the prompt, written as `probe_query`.
    public var probeQueryCount: Int
    /// RoPE base (10 000 for Llama-2/LLaVA-1.5, 1 000 000 for Qwen2.5).
    public var ropeTheta: Float
    /// Seeds the prompt text, the queries and (unless `imageSeed` is set) the image content.
    public var seed: UInt64
    /// Seeds the image content and its `source`; set it equal across snapshots to repeat an image.
    public var imageSeed: UInt64?

    public init(preset: String, model: String, layers: Int, kvHeads: Int, qHeads: Int, headDim: Int,
                dtype: DType = .f16, gridRows: Int, gridCols: Int, frames: Int = 1, images: Int = 1,
                systemTokens: Int, promptTokens: Int, promptQueryCount: Int = 8, probeQueryCount: Int = 16,
                ropeTheta: Float = 10_000, seed: UInt64 = 0, imageSeed: UInt64? = nil) {
        self.preset = preset; self.model = model; self.layers = layers; self.kvHeads = kvHeads
        self.qHeads = qHeads; self.headDim = headDim; self.dtype = dtype
        self.gridRows = gridRows; self.gridCols = gridCols; self.frames = frames; self.images = images
        self.systemTokens = systemTokens; self.promptTokens = promptTokens
        self.promptQueryCount = promptQueryCount; self.probeQueryCount = probeQueryCount
        self.ropeTheta = ropeTheta; self.seed = seed; self.imageSeed = imageSeed
    }

    public static let presetNames = ["llava", "qwen", "video", "tiny"]

    /// A named preset: `llava` (LLaVA-1.5-7B, one 24×24 image, ~340 MB in F16), `qwen`
    /// (Qwen2.5-VL-7B, grouped-query attention, one 36×52 image), `video` (Qwen2.5-VL-7B, 8 frames
    /// of 18×26) and `tiny` (a few KB, for tests).
    public static func preset(named name: String) throws(SynthError) -> SynthSpec {
        switch name {
        case "llava":
            // "A chat between a curious human and an artificial intelligence assistant. ... USER: "
            // is ~35 tokens; a short question after the image brings the text to ~60.
            return SynthSpec(preset: name, model: "llava-hf/llava-1.5-7b-hf", layers: 32, kvHeads: 32, qHeads: 32,
                             headDim: 128, gridRows: 24, gridCols: 24, systemTokens: 35, promptTokens: 25)
        case "qwen":
            return SynthSpec(preset: name, model: "Qwen/Qwen2.5-VL-7B-Instruct", layers: 28, kvHeads: 4, qHeads: 28,
                             headDim: 128, gridRows: 36, gridCols: 52, systemTokens: 20, promptTokens: 30,
                             ropeTheta: 1_000_000)
        case "video":
            return SynthSpec(preset: name, model: "Qwen/Qwen2.5-VL-7B-Instruct", layers: 28, kvHeads: 4, qHeads: 28,
                             headDim: 128, gridRows: 18, gridCols: 26, frames: 8, systemTokens: 20, promptTokens: 30,
                             ropeTheta: 1_000_000)
        case "tiny":
            return SynthSpec(preset: name, model: "synth/tiny", layers: 3, kvHeads: 2, qHeads: 4, headDim: 16,
                             gridRows: 8, gridCols: 8, systemTokens: 4, promptTokens: 8,
                             promptQueryCount: 4, probeQueryCount: 6)
        default:
            throw .unknownPreset(name)
        }
    }

    /// Tokens of one image or video.
    public var tokensPerImage: Int { gridRows * gridCols * frames }
    /// Tokens of the separator between consecutive images.
    static let separatorTokens = 1
    /// Total cached tokens.
    public var seqLen: Int {
        systemTokens + images * tokensPerImage + (images - 1) * Self.separatorTokens + promptTokens
    }
    /// The id of every image and video token in `input_ids` (LLaVA's `<image>` is 32000);
    /// text tokens take ids below it.
    public static let imageTokenID: Int64 = 32000

    /// The seed of the image content.
    public var effectiveImageSeed: UInt64 { imageSeed ?? seed }

    /// Checks every field, naming the first bad one.
    public func validate() throws(SynthError) {
        func check(_ ok: Bool, _ field: String, _ value: Int, _ problem: String) throws(SynthError) {
            if !ok { throw .badField(field: field, value: String(value), problem: problem) }
        }
        try check(layers >= 1 && layers <= 1024, "layers", layers, "must be in 1...1024")
        try check(kvHeads >= 1 && kvHeads <= 1024, "kvHeads", kvHeads, "must be in 1...1024")
        try check(qHeads >= 1 && qHeads % kvHeads == 0, "qHeads", qHeads, "must be a positive multiple of kvHeads (\(kvHeads))")
        try check(headDim >= 4 && headDim % 2 == 0 && headDim <= 4096, "headDim", headDim, "must be even and in 4...4096 (RoPE rotates pairs)")
        try check(gridRows >= 1 && gridRows <= 4096, "gridRows", gridRows, "must be in 1...4096")
        try check(gridCols >= 1 && gridCols <= 4096, "gridCols", gridCols, "must be in 1...4096")
        try check(frames >= 1 && frames <= 4096, "frames", frames, "must be in 1...4096")
        try check(images >= 1 && images <= 256, "images", images, "must be in 1...256")
        try check(systemTokens >= 1, "systemTokens", systemTokens, "must be at least 1 (the first token is the attention sink)")
        try check(promptTokens >= 1, "promptTokens", promptTokens, "must be at least 1")
        try check(promptQueryCount >= 0 && promptQueryCount <= promptTokens, "promptQueryCount", promptQueryCount,
                  "must be in 0...promptTokens (\(promptTokens)): prompt queries are the last prompt tokens")
        try check(probeQueryCount >= 0 && probeQueryCount <= 65_536, "probeQueryCount", probeQueryCount, "must be in 0...65536")
        try check(seqLen <= 16_777_216, "seqLen", seqLen, "more than 16M tokens")
        if !(ropeTheta > 1 && ropeTheta.isFinite) {
            throw .badField(field: "ropeTheta", value: String(ropeTheta), problem: "must be a finite number above 1")
        }
        if preset.isEmpty || model.isEmpty {
            throw .badField(field: preset.isEmpty ? "preset" : "model", value: "\"\"", problem: "must not be empty")
        }
    }
}
