/// One layer's cache entries as floats: what compressors read and produce.
///
/// `keys` is `[kvHeads, count, headDim]` and `values` `[kvHeads, count, vHeadDim]`, row-major;
/// `positions[j]` is the original position entry `j` stands at and `sizes[j]` how many original
/// tokens it stands for.
public struct KVLayer: Sendable, Equatable {
    public var kvHeads: Int
    public var headDim: Int
    public var vHeadDim: Int
    public var keys: [Float]
    public var values: [Float]
    public var positions: [Int32]
    public var sizes: [Int32]

    public init(kvHeads: Int, headDim: Int, vHeadDim: Int, keys: [Float], values: [Float],
                positions: [Int32], sizes: [Int32]) {
        precondition(keys.count == kvHeads * positions.count * headDim, "keys do not match [kvHeads, count, headDim]")
        precondition(values.count == kvHeads * positions.count * vHeadDim, "values do not match [kvHeads, count, vHeadDim]")
        precondition(sizes.count == positions.count, "one size per position")
        self.kvHeads = kvHeads; self.headDim = headDim; self.vHeadDim = vHeadDim
        self.keys = keys; self.values = values; self.positions = positions; self.sizes = sizes
    }

    /// Entries held.
    public var count: Int { positions.count }

    /// The layer restricted to the entries at `indices` (ascending), in that order.
    public func selecting(_ indices: [Int]) -> KVLayer {
        let n = count
        var k = [Float](repeating: 0, count: kvHeads * indices.count * headDim)
        var v = [Float](repeating: 0, count: kvHeads * indices.count * vHeadDim)
        for h in 0..<kvHeads {
            for (o, j) in indices.enumerated() {
                for d in 0..<headDim { k[(h * indices.count + o) * headDim + d] = keys[(h * n + j) * headDim + d] }
                for d in 0..<vHeadDim { v[(h * indices.count + o) * vHeadDim + d] = values[(h * n + j) * vHeadDim + d] }
            }
        }
        return KVLayer(kvHeads: kvHeads, headDim: headDim, vHeadDim: vHeadDim, keys: k, values: v,
                       positions: indices.map { positions[$0] }, sizes: indices.map { sizes[$0] })
    }
}

/// Query states `[heads, count, headDim]` (prompt or probe queries of one layer).
public struct QueryBlock: Sendable, Equatable {
    public var heads: Int
    public var count: Int
    public var headDim: Int
    public var values: [Float]

    public init(heads: Int, count: Int, headDim: Int, values: [Float]) {
        precondition(values.count == heads * count * headDim, "queries do not match [heads, count, headDim]")
        self.heads = heads; self.count = count; self.headDim = headDim; self.values = values
    }
}
