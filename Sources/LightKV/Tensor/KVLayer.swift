/// One layer's cache entries as floats: what compressors read and produce.
///
/// `keys` is `[kvHeads, count, headDim]` and `values` `[kvHeads, count, vHeadDim]`, row-major;
/// `positions[j]` is the original position entry `j` stands at and `sizes[j]` how many original
/// tokens it stands for. `memberPositions`, when known, lists the original positions of every
/// entry's members (see its doc), so a merged layer can be expanded back for engines without
/// proportional attention.
public struct KVLayer: Sendable, Equatable {
    public var kvHeads: Int
    public var headDim: Int
    public var vHeadDim: Int
    public var keys: [Float]
    public var values: [Float]
    public var positions: [Int32]
    public var sizes: [Int32]
    /// The original positions each entry stands for, entry after entry: entry `j`'s members are
    /// `memberPositions[o_j ..< o_j + sizes[j]]` with `o_j = sizes[0..<j].sum()`, ascending
    /// within an entry. Nil means "not tracked": then entries of size 1 stand for their own
    /// position and members of larger entries are unknown (an input that arrived merged).
    /// Kept beside `positions` rather than derived from them because a merged group's members
    /// need not be contiguous (a window is a 2-D neighbourhood, and ToMe pairs any A with any B).
    public var memberPositions: [Int32]?

    public init(kvHeads: Int, headDim: Int, vHeadDim: Int, keys: [Float], values: [Float],
                positions: [Int32], sizes: [Int32], memberPositions: [Int32]? = nil) {
        precondition(keys.count == kvHeads * positions.count * headDim, "keys do not match [kvHeads, count, headDim]")
        precondition(values.count == kvHeads * positions.count * vHeadDim, "values do not match [kvHeads, count, vHeadDim]")
        precondition(sizes.count == positions.count, "one size per position")
        self.kvHeads = kvHeads; self.headDim = headDim; self.vHeadDim = vHeadDim
        self.keys = keys; self.values = values; self.positions = positions; self.sizes = sizes
        if let m = memberPositions {
            precondition(m.count == sizes.reduce(0) { $0 + Int($1) }, "one member position per member")
        }
        self.memberPositions = memberPositions
    }

    /// Entries held.
    public var count: Int { positions.count }

    /// The layer restricted to the entries at `indices` (ascending), in that order.
    public func selecting(_ indices: [Int]) -> KVLayer {
        let n = count
        let (k, v) = gatheringRows(indices)
        var members: [Int32]?
        if let m = memberPositions {
            var offsets = [Int](repeating: 0, count: n + 1)
            for j in 0..<n { offsets[j + 1] = offsets[j] + Int(sizes[j]) }
            members = indices.flatMap { m[offsets[$0]..<offsets[$0 + 1]] }
        }
        return KVLayer(kvHeads: kvHeads, headDim: headDim, vHeadDim: vHeadDim, keys: k, values: v,
                       positions: indices.map { positions[$0] }, sizes: indices.map { sizes[$0] },
                       memberPositions: members)
    }
}

extension KVLayer {
    /// Keys and values of the entries at `rows` (any order, repeats allowed), per head: the
    /// copy `selecting` and `expanded` share. Consecutive rows are copied as one run (a
    /// segment's cut at the prompt is one run a head), into memory not zeroed first.
    func gatheringRows(_ rows: [Int]) -> (keys: [Float], values: [Float]) {
        let n = count, m = rows.count
        // Runs of consecutive rows: (first output row, first input row, length).
        var runs: [(out: Int, from: Int, length: Int)] = []
        for (o, j) in rows.enumerated() {
            if let last = runs.last, last.from + last.length == j { runs[runs.count - 1].length += 1 } else { runs.append((o, j, 1)) }
        }
        func gather(_ source: [Float], dim: Int) -> [Float] {
            [Float](unsafeUninitializedCapacity: kvHeads * m * dim) { out, initialized in
                source.withUnsafeBufferPointer { s in
                    for h in 0..<kvHeads where dim > 0 {
                        for r in runs {
                            (out.baseAddress! + (h * m + r.out) * dim).initialize(from: s.baseAddress! + (h * n + r.from) * dim,
                                                                                  count: r.length * dim)
                        }
                    }
                }
                initialized = kvHeads * m * dim
            }
        }
        return (gather(keys, dim: headDim), gather(values, dim: vHeadDim))
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
