/// What a compressor knows about the layer it is given, besides its entries.
public struct LayerContext: Sendable {
    public var index: Int
    public var layerCount: Int
    /// The snapshot's spans over original positions `[0, seqLen)`.
    public var spans: [Span]
    public var seqLen: Int
    /// `prompt_query` of this layer, when the snapshot has one.
    public var promptQuery: QueryBlock?
    /// Dtype of the input's keys and values (what unquantized storage keeps when it can).
    public var inputDType: DType
    /// Original position of `promptQuery`'s first token; nil: the last `count` prompt tokens.
    public var promptQueryStart: Int?

    public init(index: Int, layerCount: Int, spans: [Span], seqLen: Int, promptQuery: QueryBlock?, inputDType: DType = .f16) {
        self.index = index; self.layerCount = layerCount; self.spans = spans; self.seqLen = seqLen
        self.promptQuery = promptQuery
        self.inputDType = inputDType
    }
}

/// Reduces the vision entries of a cache, one layer at a time, layers in order.
///
/// A compressor may carry state from layer to layer (LightKV's groups hold for every deeper
/// layer), so it is a fresh value per snapshot. Text entries must come out bit-identical.
public protocol CacheCompressor {
    /// How many times the compressor must `survey` every layer, in order, before it compresses
    /// any: 0, or 1 where it divides a budget over layers; a guard around it adds its own pass.
    var surveyPasses: Int { get }
    /// Sees layer `context.index` in a survey pass: its keys, positions and sizes; values are
    /// not given (`vHeadDim` 0: `SnapshotEncoder` skips converting them).
    mutating func survey(_ layer: KVLayer, context: LayerContext)
    mutating func compress(_ layer: KVLayer, context: LayerContext) -> KVLayer
    /// What was done, for the `kvsnap.compression` record (for example the guidance source used).
    var record: [String: String] { get }
}

extension CacheCompressor {
    public var surveyPasses: Int { 0 }
    public mutating func survey(_ layer: KVLayer, context: LayerContext) {}
}

extension LayerContext {
    /// Original positions of the `promptQuery` tokens, when known.
    public var promptQueryPositions: Range<Int>? {
        guard let q = promptQuery else { return nil }
        if let start = promptQueryStart { return start ..< start + q.count }
        guard let prompt = spans.promptRange, prompt.count >= q.count else { return nil }
        return prompt.upperBound - q.count ..< prompt.upperBound
    }
}

/// Keeps every entry as it is.
public struct IdentityCompressor: CacheCompressor {
    public init() {}
    public func compress(_ layer: KVLayer, context: LayerContext) -> KVLayer { layer }
    public var record: [String: String] { ["method": "none"] }
}
