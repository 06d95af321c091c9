import Dispatch

/// How much the prompt attends to each vision entry: the weight LightKV merges with.
///
/// For every query head `h` and prompt token `t`: `softmax_j(q[h,t]·k[h/g, j]/√d + log size_j)`
/// over the vision entries `j` only (`g = qHeads/kvHeads`, grouped-query mapping), then summed
/// over heads and tokens. `log size_j` makes an already-merged entry count for the tokens it
/// stands for, so weights keep accumulating as groups grow.
public enum PromptAttention {
    /// Weights of `entries` (indices into `layer`), in that order.
    public static func weights(queries: QueryBlock, layer: KVLayer, entries: [Int]) -> [Float] {
        let nv = entries.count
        guard nv > 0, queries.count > 0 else { return [Float](repeating: 1, count: nv) }
        precondition(queries.headDim == layer.headDim && queries.heads % layer.kvHeads == 0,
                     "queries [\(queries.heads), \(queries.count), \(queries.headDim)] do not fit keys with \(layer.kvHeads) heads of \(layer.headDim)")
        let group = queries.heads / layer.kvHeads
        let d = layer.headDim, n = layer.count, m = queries.count
        let scale = 1 / Float(d).squareRoot()
        let bias = entries.map { logf(Float(layer.sizes[$0])) }
        let chunks = min(2, queries.heads)
        var partials = [Float](repeating: 0, count: chunks * nv)
        let heads = queries.heads
        layer.keys.withUnsafeBufferPointer { keysBuffer in
            queries.values.withUnsafeBufferPointer { queryBuffer in
                partials.withUnsafeMutableBufferPointer { partBuffer in
                    let keys = SharedPointer(keysBuffer.baseAddress!), qs = SharedPointer(queryBuffer.baseAddress!)
                    let parts = SharedPointer(partBuffer.baseAddress!)
                    DispatchQueue.concurrentPerform(iterations: chunks) { c in
                        let acc = parts.base + c * nv
                        let lg = UnsafeMutablePointer<Float>.allocate(capacity: nv)
                        defer { lg.deallocate() }
                        for h in stride(from: c, to: heads, by: chunks) {
                            let kh = keys.base + (h / group) * n * d
                            for t in 0..<m {
                                let q = qs.base + (h * m + t) * d
                                for o in 0..<nv {
                                    lg[o] = VectorKernels.dot(q, kh + entries[o] * d, d) * scale + bias[o]
                                }
                                VectorKernels.softmaxInPlace(lg, nv)
                                for o in 0..<nv { acc[o] += lg[o] }
                            }
                        }
                    }
                }
            }
        }
        var total = [Float](partials[0..<nv])
        for c in 1..<chunks { for o in 0..<nv { total[o] += partials[c * nv + o] } }
        return total
    }

    /// The keys of the prompt span's entries used as queries (`[kvHeads, m, headDim]`), for
    /// snapshots without `prompt_query`; nil when the layer holds no prompt entries.
    public static func promptKeys(layer: KVLayer, promptRange: Range<Int>?) -> QueryBlock? {
        guard let range = promptRange else { return nil }
        let idx = layer.positions.indices.filter { range.contains(Int(layer.positions[$0])) }
        guard !idx.isEmpty else { return nil }
        let n = layer.count, d = layer.headDim
        var q = [Float](repeating: 0, count: layer.kvHeads * idx.count * d)
        for h in 0..<layer.kvHeads {
            for (o, j) in idx.enumerated() {
                for e in 0..<d { q[(h * idx.count + o) * d + e] = layer.keys[(h * n + j) * d + e] }
            }
        }
        return QueryBlock(heads: layer.kvHeads, count: idx.count, headDim: d, values: q)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension PromptAttention {
    /// Where a layer's guidance came from, for the compression record.
    public enum Source: String, Sendable {
        case promptQuery = "prompt_query"
        case promptKeys = "prompt keys (no prompt_query)"
        case uniform = "none (size-weighted)"
    }

    /// Weights for `entries` of `layer` from the best source `guidance` allows: the layer's
    /// `prompt_query`, else the prompt span's keys as queries, else each entry's size.
    public static func guide(_ guidance: LightKVSettings.Guidance, layer: KVLayer, promptQuery: QueryBlock?,
                             promptRange: Range<Int>?, entries: [Int]) -> (weights: [Float], source: Source) {
        if guidance == .query, let q = promptQuery, q.count > 0 {
            return (weights(queries: q, layer: layer, entries: entries), .promptQuery)
        }
        if guidance != .none, let q = promptKeys(layer: layer, promptRange: promptRange) {
            return (weights(queries: q, layer: layer, entries: entries), .promptKeys)
        }
        return (entries.map { Float(layer.sizes[$0]) }, .uniform)
    }
}
