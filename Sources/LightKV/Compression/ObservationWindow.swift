import Dispatch

/// AirCache's elite observation window: the few instruction tokens whose view of the image
/// decides which vision entries matter.
///
/// The observers are chosen by self-attention among the instruction tokens: the last text
/// token's attention (averaged over query heads) over the instruction tokens that have query
/// states (the snapshot's `prompt_query`, the last `m` prompt tokens); the `k` it attends most,
/// itself always among them. Each observer and query head is one perspective on the image;
/// importance is their attention to the vision entries (softmax over every entry of the
/// layer, `+ log size`), averaged with each perspective weighted by its agreement (cosine) with
/// the consensus distribution, so a head that looks elsewhere than the rest counts for less.
public enum ObservationWindow {
    /// Indices of the observers among the `queries.count` instruction tokens, ascending.
    /// `ownKeys` holds the key of each of those tokens (`[kvHeads, m, headDim]`).
    public static func observers(queries: QueryBlock, ownKeys: [Float], kvHeads: Int, count k: Int) -> [Int] {
        let m = queries.count, d = queries.headDim
        precondition(ownKeys.count == kvHeads * m * d, "one key per instruction token and kv head")
        guard m > 1, k < m else { return Array(0..<m) }
        let group = queries.heads / kvHeads
        let scale = 1 / Float(d).squareRoot()
        var score = [Float](repeating: 0, count: m)
        var logits = [Float](repeating: 0, count: m)
        queries.values.withUnsafeBufferPointer { q in
            ownKeys.withUnsafeBufferPointer { keys in
                logits.withUnsafeMutableBufferPointer { lg in
                    for h in 0..<queries.heads {
                        let last = q.baseAddress! + (h * m + m - 1) * d
                        for t in 0..<m {
                            lg[t] = VectorKernels.dot(last, keys.baseAddress! + ((h / group) * m + t) * d, d) * scale
                        }
                        VectorKernels.softmaxInPlace(lg.baseAddress!, m)
                        for t in 0..<m { score[t] += lg[t] }
                    }
                }
            }
        }
        let others = (0..<(m - 1)).sorted { score[$0] > score[$1] || (score[$0] == score[$1] && $0 > $1) }
        return (others.prefix(max(k - 1, 0)) + [m - 1]).sorted()
    }

    /// Importance of `entries` (indices into `layer`) seen by the `observers` rows of `queries`,
    /// in attention-mass units (perspectives' agreement-weighted mean of the attention each
    /// entry receives).
    public static func importance(queries: QueryBlock, observers: [Int], layer: KVLayer, entries: [Int],
                                  agreement: Bool = true) -> [Float] {
        let nv = entries.count, n = layer.count, d = layer.headDim, m = queries.count
        guard nv > 0, !observers.isEmpty else { return [Float](repeating: 0, count: nv) }
        let group = queries.heads / layer.kvHeads
        let scale = 1 / Float(d).squareRoot()
        let bias = layer.sizes.map { logf(Float($0)) }
        let perspectives = queries.heads * observers.count
        // Vision attention of every perspective, one row each.
        var rows = [Float](repeating: 0, count: perspectives * nv)
        layer.keys.withUnsafeBufferPointer { kb in
            queries.values.withUnsafeBufferPointer { qb in
                rows.withUnsafeMutableBufferPointer { rb in
                    let keys = SharedPointer(kb.baseAddress!), qs = SharedPointer(qb.baseAddress!), out = SharedPointer(rb.baseAddress!)
                    DispatchQueue.concurrentPerform(iterations: min(2, perspectives)) { c in
                        let lg = UnsafeMutablePointer<Float>.allocate(capacity: n)
                        defer { lg.deallocate() }
                        for p in stride(from: c, to: perspectives, by: min(2, perspectives)) {
                            let h = p / observers.count, t = observers[p % observers.count]
                            let q = qs.base + (h * m + t) * d, kh = keys.base + (h / group) * n * d
                            for j in 0..<n { lg[j] = VectorKernels.dot(q, kh + j * d, d) * scale + bias[j] }
                            VectorKernels.softmaxInPlace(lg, n)
                            for (o, j) in entries.enumerated() { out.base[p * nv + o] = lg[j] }
                        }
                    }
                }
            }
        }
        // Consensus of the normalised distributions, then agreement weights.
        var consensus = [Float](repeating: 0, count: nv)
        var mass = [Float](repeating: 0, count: perspectives)
        for p in 0..<perspectives {
            mass[p] = rows[p * nv ..< (p + 1) * nv].reduce(0, +)
            guard mass[p] > 0 else { continue }
            for o in 0..<nv { consensus[o] += rows[p * nv + o] / mass[p] }
        }
        let cNorm = consensus.reduce(0) { $0 + $1 * $1 }.squareRoot()
        var importance = [Float](repeating: 0, count: nv)
        var weightSum: Float = 0
        for p in 0..<perspectives where mass[p] > 0 {
            var dot: Float = 0, norm: Float = 0
            for o in 0..<nv { let x = rows[p * nv + o]; dot += x * consensus[o]; norm += x * x }
            let weight = agreement ? max(0, dot / max(norm.squareRoot() * cNorm, 1e-30)) : 1
            weightSum += weight
            for o in 0..<nv { importance[o] += weight * rows[p * nv + o] }
        }
        if weightSum > 0 { for o in 0..<nv { importance[o] /= weightSum } }
        return importance
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
