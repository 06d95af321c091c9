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
    mutating func compress(_ layer: KVLayer, context: LayerContext) -> KVLayer
    /// What was done, for the `kvsnap.compression` record (for example the guidance source used).
    var record: [String: String] { get }
}

/// Keeps every entry as it is.
public struct IdentityCompressor: CacheCompressor {
    public init() {}
    public func compress(_ layer: KVLayer, context: LayerContext) -> KVLayer { layer }
    public var record: [String: String] { ["method": "none"] }
}
