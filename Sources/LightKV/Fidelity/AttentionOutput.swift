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
        let both = run(queries: queries, layer: layer, plain: !proportional, proportional: proportional)
        return proportional ? both.proportional : both.plain
    }

    /// Both outputs, with and without `log(size)`, from one pass over the logits.
    public static func both(queries: QueryBlock, layer: KVLayer) -> (proportional: [Float], plain: [Float]) {
        run(queries: queries, layer: layer, plain: true, proportional: true)
    }

    private static func run(queries: QueryBlock, layer: KVLayer, plain wantPlain: Bool,
                            proportional wantProportional: Bool) -> (proportional: [Float], plain: [Float]) {
        precondition(queries.headDim == layer.headDim && queries.heads % layer.kvHeads == 0,
                     "queries [\(queries.heads), \(queries.count), \(queries.headDim)] do not fit keys with \(layer.kvHeads) heads of \(layer.headDim)")
        let group = queries.heads / layer.kvHeads
        let n = layer.count, d = layer.headDim, dv = layer.vHeadDim, p = queries.count, heads = queries.heads
        let scale = 1 / Float(d).squareRoot()
        let bias = layer.sizes.map { logf(Float($0)) }
        let merged = layer.sizes.contains { $0 != 1 }
        var prop = [Float](repeating: 0, count: wantProportional ? heads * p * dv : 0)
        var plain = [Float](repeating: 0, count: wantPlain ? heads * p * dv : 0)
        let chunks = min(2, heads)
        layer.keys.withUnsafeBufferPointer { kb in
            layer.values.withUnsafeBufferPointer { vb in
                queries.values.withUnsafeBufferPointer { qb in
                    prop.withUnsafeMutableBufferPointer { pb in
                        plain.withUnsafeMutableBufferPointer { lb in
                            let keys = SharedPointer(kb.baseAddress!), values = SharedPointer(vb.baseAddress!)
                            let qs = SharedPointer(qb.baseAddress!)
                            let props = pb.baseAddress.map(SharedPointer.init), plains = lb.baseAddress.map(SharedPointer.init)
                            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                                let raw = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
                                let weights = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
                                defer { raw.deallocate(); weights.deallocate() }
                                for h in stride(from: c, to: heads, by: chunks) {
                                    let kh = keys.base + (h / group) * n * d
                                    let vh = values.base + (h / group) * n * dv
                                    for t in 0..<p {
                                        let q = qs.base + (h * p + t) * d
                                        for j in 0..<n { raw[j] = VectorKernels.dot(q, kh + j * d, d) * scale }
                                        // Without merged entries both outputs are the same softmax.
                                        for (wanted, out, biased) in [(wantPlain, plains, false), (wantProportional, props, true)] {
                                            guard wanted, let out else { continue }
                                            let o = out.base + (h * p + t) * dv
                                            if biased && !merged && wantPlain, let other = plains {
                                                o.update(from: other.base + (h * p + t) * dv, count: dv)
                                                continue
                                            }
                                            for j in 0..<n { weights[j] = biased ? raw[j] + bias[j] : raw[j] }
                                            VectorKernels.softmaxInPlace(weights, n)
                                            for j in 0..<n { VectorKernels.axpy(weights[j], vh + j * dv, o, dv) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return (prop, plain)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
