import Dispatch

/// What a layer's cache gives a query: `softmax(q·kᵀ/√d [+ log size])·v`.
///
/// This is the quantity compression must preserve; comparing it over the full and the
/// compressed layer measures the damage directly, without the model.
public enum AttentionOutput {
    /// Outputs `[qHeads, p, vHeadDim]` of `queries` (`[qHeads, p, headDim]`, query head `h`
    /// reading kv head `h / (qHeads/kvHeads)`); `proportional` adds `log(size)` to each
    /// entry's logit.
    public static func compute(queries: QueryBlock, layer: KVLayer, proportional: Bool) -> [Float] {
        precondition(queries.headDim == layer.headDim && queries.heads % layer.kvHeads == 0,
                     "queries [\(queries.heads), \(queries.count), \(queries.headDim)] do not fit keys with \(layer.kvHeads) heads of \(layer.headDim)")
        let group = queries.heads / layer.kvHeads
        let n = layer.count, d = layer.headDim, dv = layer.vHeadDim, p = queries.count, heads = queries.heads
        let scale = 1 / Float(d).squareRoot()
        let bias = proportional ? layer.sizes.map { logf(Float($0)) } : [Float](repeating: 0, count: n)
        var out = [Float](repeating: 0, count: heads * p * dv)
        let chunks = min(2, heads)
        layer.keys.withUnsafeBufferPointer { kb in
            layer.values.withUnsafeBufferPointer { vb in
                queries.values.withUnsafeBufferPointer { qb in
                    out.withUnsafeMutableBufferPointer { ob in
                        let keys = SharedPointer(kb.baseAddress!), values = SharedPointer(vb.baseAddress!)
                        let qs = SharedPointer(qb.baseAddress!), outs = SharedPointer(ob.baseAddress!)
                        DispatchQueue.concurrentPerform(iterations: chunks) { c in
                            let logits = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
                            defer { logits.deallocate() }
                            for h in stride(from: c, to: heads, by: chunks) {
                                let kh = keys.base + (h / group) * n * d
                                let vh = values.base + (h / group) * n * dv
                                for t in 0..<p {
                                    let q = qs.base + (h * p + t) * d
                                    for j in 0..<n { logits[j] = VectorKernels.dot(q, kh + j * d, d) * scale + bias[j] }
                                    VectorKernels.softmaxInPlace(logits, n)
                                    let o = outs.base + (h * p + t) * dv
                                    for j in 0..<n { VectorKernels.axpy(logits[j], vh + j * dv, o, dv) }
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
