import Dispatch

/// One layer as it goes into a pack: kept entries' keys and values, encoded, with their
/// positions and sizes.
public struct PackedLayer: Sendable {
    public var positions: [Int32]
    public var sizes: [Int32]
    public var keys: EncodedBlock
    public var values: EncodedBlock
    /// Original positions of every entry's members (`KVLayer.memberPositions`), when the
    /// reduction tracked them: what `fetch --expand` needs to put each member back where it stood.
    public var memberPositions: [Int32]? = nil
    public var count: Int { positions.count }
}

/// Applies a policy to a snapshot, layer after layer, in order.
///
/// Layers must be requested as 0, 1, 2, …: reduction carries state from layer to layer.
/// With no reduction and no quantization the input bytes are kept exactly (no float round trip).
public struct SnapshotEncoder {
    public let snapshot: Snapshot
    public let policy: Policy
    private var compressor: any CacheCompressor
    private var nextLayer = 0
    /// The last this-many `prompt_query` tokens are withheld from the compressor, so an
    /// evaluation can use them as probes without the compressor having seen them.
    public var withheldPromptQueries = 0
    /// Time spent inside the compressor so far (float conversion and quantization excluded),
    /// so `eval` and benchmarks can tell the reduction's own cost.
    public private(set) var reduceNanoseconds: UInt64 = 0

    /// Which positions are encoded (see `EncodedPart`); the whole snapshot unless set.
    public let part: EncodedPart

    public init(snapshot: Snapshot, policy: Policy, part: EncodedPart = .whole) {
        self.snapshot = snapshot
        self.policy = policy
        self.part = part
        // A segmented entry's own part holds no vision entries (`segmentedPrefixEnd`): the
        // reduction, which touches only those, belongs to the segment.
        if case .suffix = part { self.compressor = IdentityCompressor() } else { self.compressor = policy.reduction.makeCompressor() }
    }

    /// True when the stored keys and values are the input's bytes.
    public var isExact: Bool { policy.reduction == .none && policy.quantization == .none }

    /// A prompt-guided reduction's segment (docs/design/segments.md, "A guided prefix"): the
    /// reduction sees the whole snapshot, its prompt queries included, exactly as when the
    /// entry is stored whole; its result is cut at the seam before quantization.
    private var reducesWholeForPrefix: Int? {
        if case .prefix(let end) = part, policy.reduction.readsPrompt { return end }
        return nil
    }

    public func context(_ i: Int) -> LayerContext {
        if reducesWholeForPrefix == nil, case .prefix(let end) = part {
            // Nothing after the prefix may shape it: its own spans, no prompt queries.
            return LayerContext(index: i, layerCount: snapshot.layerCount, spans: snapshot.metadata.spans.filter { $0.end <= end },
                                seqLen: end, promptQuery: nil, inputDType: snapshot.dtype)
        }
        var query = snapshot.queries(snapshot.layers[i].promptQuery)
        if withheldPromptQueries > 0, let q = query {
            let keep = q.count - withheldPromptQueries
            query = keep <= 0 ? nil : QueryBlock(heads: q.heads, count: keep, headDim: q.headDim, values: q.values.withheld(
                heads: q.heads, count: q.count, keep: keep, dim: q.headDim))
        }
        var context = LayerContext(index: i, layerCount: snapshot.layerCount, spans: snapshot.metadata.spans,
                                   seqLen: snapshot.seqLen, promptQuery: query, inputDType: snapshot.dtype)
        if withheldPromptQueries > 0, let prompt = snapshot.metadata.spans.promptRange, let q = query {
            context.promptQueryStart = prompt.upperBound - q.count - withheldPromptQueries
        }
        return context
    }

    /// Called after a surveying compressor (`CacheCompressor.surveyPasses`) has seen layer
    /// `i` in each of its passes, so a caller streaming from a memory map can let that layer's
    /// pages go until the layer is read again.
    public var surveyed: ((Int) -> Void)?

    /// Member positions of an already-merged input's layers, which a kvsnap cannot carry (a
    /// re-pack reads them from the old pack): with them, further merges keep tracking members.
    public var inputMembers: ((Int) -> [Int32]?)?

    /// The reduced layer `i` as floats, before quantization (what fidelity is measured on).
    public mutating func reduce(_ i: Int) -> KVLayer {
        precondition(i == nextLayer, "layers must be encoded in order: asked for \(i), expected \(nextLayer)")
        nextLayer += 1
        let passes = i == 0 ? compressor.surveyPasses : 0
        for _ in 0..<passes {
            for j in 0..<snapshot.layerCount {
                let (layer, ctx) = (input(j, keysOnly: true), context(j))
                let started = DispatchTime.now().uptimeNanoseconds
                compressor.survey(layer, context: ctx)
                reduceNanoseconds += DispatchTime.now().uptimeNanoseconds - started
                surveyed?(j)
            }
        }
        let layer = input(i)
        let ctx = context(i)
        let started = DispatchTime.now().uptimeNanoseconds
        defer { reduceNanoseconds += DispatchTime.now().uptimeNanoseconds - started }
        return compressor.compress(layer, context: ctx)
    }

    /// Layer `i` of the input as floats, with the member positions `inputMembers` knows;
    /// `keysOnly` for a survey, which reads no values.
    private func input(_ i: Int, keysOnly: Bool = false) -> KVLayer {
        let window = reducesWholeForPrefix == nil ? part.window(seqLen: snapshot.seqLen) : nil
        var layer = window.map { snapshot.floatLayer(i, window: $0, keysOnly: keysOnly) }
            ?? snapshot.floatLayer(i, keysOnly: keysOnly)
        if let m = inputMembers?(i), m.count == layer.sizes.reduce(0, { $0 + Int($1) }) { layer.memberPositions = m }
        return layer
    }

    /// Refuses a policy whose requested retention this snapshot's shape cannot reach.
    public func checkRetention() throws(PolicyError) {
        try policy.reduction.checkRetention(layerCount: snapshot.layerCount, spans: snapshot.metadata.spans)
    }

    /// Encodes layer `i`.
    public mutating func encode(_ i: Int) -> PackedLayer { stage(i).run() }

    /// Does the part of layer `i` that must run in layer order (the reduction, which carries
    /// state from layer to layer) and returns the rest (byte planes, quantization) as a job
    /// any thread may run, so a pipeline can overlap it with the next layer's reduction.
    public mutating func stage(_ i: Int) -> LayerJob {
        if isExact {
            // The lossy path checks the order in `reduce`.
            precondition(i == nextLayer, "layers must be encoded in order: asked for \(i), expected \(nextLayer)")
            nextLayer += 1
            let snapshot = self.snapshot
            let window = part.window(seqLen: snapshot.seqLen)
            return LayerJob {
                let l = snapshot.layers[i]
                guard let window else {
                    return PackedLayer(positions: snapshot.positions(layer: i), sizes: snapshot.sizes(layer: i),
                                       keys: BlockCodec.encodeRaw(snapshot.data(l.key), dtype: snapshot.dtype),
                                       values: BlockCodec.encodeRaw(snapshot.data(l.value), dtype: snapshot.dtype))
                }
                // The window's rows of every head, split into byte planes where they land: no copy
                // of the rows first (the memory promise counts every copy of a large layer).
                func rows(_ data: UnsafeRawBufferPointer, dim: Int) -> EncodedBlock {
                    let width = snapshot.dtype.size, n = snapshot.seqLen, heads = snapshot.kvHeads
                    let piece = window.count * dim, total = heads * piece
                    let bytes = [UInt8](unsafeUninitializedCapacity: total * width) { out, initialized in
                        if total > 0 {
                            for h in 0..<heads {
                                BytePlanes.split(data.baseAddress! + (h * n + window.lowerBound) * dim * width, count: piece,
                                                 width: width, into: out.baseAddress! + h * piece, planeStride: total)
                            }
                        }
                        initialized = total * width
                    }
                    return EncodedBlock(encoding: .raw(snapshot.dtype), bytes: bytes)
                }
                return PackedLayer(positions: window.map { Int32($0) }, sizes: [Int32](repeating: 1, count: window.count),
                                   keys: rows(snapshot.data(l.key), dim: snapshot.headDim),
                                   values: rows(snapshot.data(l.value), dim: snapshot.vHeadDim))
            }
        }
        var reduced = reduce(i)
        var context = context(i)
        if let end = reducesWholeForPrefix {
            // Only vision entries were reduced and all lie before the seam; the prompt's entries
            // after it belong to the entry's own part. Quantized as the segment alone.
            reduced = reduced.selecting(reduced.positions.indices.filter { reduced.positions[$0] < end })
            context = LayerContext(index: i, layerCount: snapshot.layerCount, spans: snapshot.metadata.spans.filter { $0.end <= end },
                                   seqLen: end, promptQuery: nil, inputDType: snapshot.dtype)
        }
        let quantization = policy.quantization, layer = reduced, layerContext = context
        return LayerJob {
            let (k, v) = quantization.encode(layer, context: layerContext)
            return PackedLayer(positions: layer.positions, sizes: layer.sizes, keys: k, values: v,
                               memberPositions: layer.sizes.allSatisfy { $0 == 1 } ? nil : layer.memberPositions)
        }
    }

    /// What the reduction did, for the compression record (a reducing policy's part: nothing;
    /// its segment's record says what was done).
    public var reductionRecord: [String: String] {
        if case .suffix = part, policy.reduction != .none { return [:] }
        return compressor.record
    }
}

/// Which positions of an uncompressed snapshot an encoder packs: all of them, the shareable
/// prefix `[0, end)` (a segment: encoded as if nothing followed it, except that a
/// prompt-guided reduction is guided by the prompt that follows), or the rest `[start,
/// seq_len)` (a segmented entry's own part). docs/design/segments.md.
public enum EncodedPart: Sendable, Equatable {
    case whole
    case prefix(end: Int)
    case suffix(start: Int)

    /// The positions encoded; nil for the whole snapshot.
    public func window(seqLen: Int) -> Range<Int>? {
        switch self {
        case .whole: return nil
        case .prefix(let end): return 0..<end
        case .suffix(let start): return start..<seqLen
        }
    }
}

/// The order-free rest of one layer's encoding (see `SnapshotEncoder.stage`).
public struct LayerJob: @unchecked Sendable {
    private let work: () -> PackedLayer
    init(_ work: @escaping () -> PackedLayer) { self.work = work }
    public func run() -> PackedLayer { work() }
}

extension [Float] {
    /// The first `keep` of `count` rows in each of `heads` blocks of `[heads, count, dim]`.
    func withheld(heads: Int, count: Int, keep: Int, dim: Int) -> [Float] {
        (0..<heads).flatMap { h in self[(h * count) * dim ..< (h * count + keep) * dim] }
    }
}
