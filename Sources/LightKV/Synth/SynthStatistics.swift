import Foundation

/// The realism statistics of a snapshot, measured from its bytes the way docs/SYNTH.md reports
/// them, so the numbers there are reproducible (`kvstore synth --stats`) and tests can assert them.
///
/// All attention figures use the prompt queries of one layer against every key, with the
/// usual `softmax(q·k/√d)` and grouped-query head mapping.
public struct SynthStatistics: Sendable, CustomStringConvertible {
    public var layer: Int
    /// Mean cosine between keys of horizontally adjacent image tokens (same head, same frame),
    /// each key less its head's mean vision key.
    public var neighbourKeyCosine: Double
    /// Mean cosine between (centred) keys of random pairs of image tokens.
    public var randomKeyCosine: Double
    /// The same two figures for values.
    public var neighbourValueCosine: Double
    public var randomValueCosine: Double
    /// Share of the vision tokens that belong to the focus object (what uniform attention would give it).
    public var focusShare: Double
    /// Of the prompt queries' attention that lands on vision tokens, the part on the focus object.
    public var focusMass: Double
    /// Of the same attention, the part on the 10% most-attended vision tokens.
    public var topDecileMass: Double
    /// Entropy of the attention over vision tokens (renormalised), divided by log(vision tokens):
    /// 1 is uniform, 0 one-hot.
    public var normalizedVisionEntropy: Double
    /// Attention mass on the first token (the sink), of all attention.
    public var sinkMass: Double
    /// Attention mass on all vision tokens, of all attention.
    public var visionMass: Double
    /// Per head, the largest channel mean |key| over the median channel mean |key|, averaged over heads.
    public var keyOutlierRatio: Double
    /// The same ratio for values (no outlier channels: close to the ratio of a Gaussian).
    public var valueOutlierRatio: Double
    /// Norm of the sink token's value over the mean value norm.
    public var sinkValueNormRatio: Double

    /// Measures layer `layer` of `snapshot`; `focus` are the focus object's positions.
    public init(snapshot: Snapshot, layer: Int, focus: [Int]) {
        self.layer = layer
        let kv = snapshot.floatLayer(layer)
        let n = kv.count, hd = kv.headDim, heads = kv.kvHeads
        let spans = snapshot.metadata.spans
        var rng = SynthRandom(0x57A75, UInt64(layer))

        func cosine(_ a: [Float], _ i: Int, _ j: Int, _ h: Int) -> Double {
            var ab: Float = 0, aa: Float = 0, bb: Float = 0
            let x = (h * n + i) * hd, y = (h * n + j) * hd
            for d in 0..<hd { ab += a[x + d] * a[y + d]; aa += a[x + d] * a[x + d]; bb += a[y + d] * a[y + d] }
            return Double(ab / max((aa * bb).squareRoot(), 1e-20))
        }
        var neighbours: [(Int, Int)] = [], randoms: [(Int, Int)] = []
        let vision = spans.filter(\.isVision)
        let visionTokens = vision.flatMap { Array($0.start..<$0.end) }
        for span in vision {
            for f in 0..<span.frameCount {
                for r in 0..<span.rows {
                    for c in 0..<(span.cols - 1) {
                        let t = span.start + (f * span.rows + r) * span.cols + c
                        neighbours.append((t, t + 1))
                    }
                }
            }
        }
        if neighbours.count > 2000 { neighbours = (0..<2000).map { _ in neighbours[rng.below(neighbours.count)] } }
        if visionTokens.count > 1 {
            for _ in 0..<max(neighbours.count, 1) {
                let a = visionTokens[rng.below(visionTokens.count)], b = visionTokens[rng.below(visionTokens.count)]
                if a != b { randoms.append((a, b)) }
            }
        }
        func meanCosine(_ a: [Float], _ pairs: [(Int, Int)]) -> Double {
            guard !pairs.isEmpty else { return 0 }
            var s = 0.0
            for h in 0..<heads { for (i, j) in pairs { s += cosine(a, i, j, h) } }
            return s / Double(pairs.count * heads)
        }
        // Keys are compared after removing each head's mean vision key: the outlier channels
        // (hundreds of times the median) are nearly constant and would put every cosine at
        // 0.999, while a constant part of a key only shifts every logit alike.
        var centred = kv.keys
        if !visionTokens.isEmpty {
            for h in 0..<heads {
                var mean = [Float](repeating: 0, count: hd)
                for t in visionTokens { for d in 0..<hd { mean[d] += kv.keys[(h * n + t) * hd + d] } }
                for d in 0..<hd { mean[d] /= Float(visionTokens.count) }
                for t in 0..<n { for d in 0..<hd { centred[(h * n + t) * hd + d] -= mean[d] } }
            }
        }
        neighbourKeyCosine = meanCosine(centred, neighbours)
        randomKeyCosine = meanCosine(centred, randoms)
        neighbourValueCosine = meanCosine(kv.values, neighbours)
        randomValueCosine = meanCosine(kv.values, randoms)

        func outlierRatio(_ a: [Float]) -> Double {
            var total = 0.0
            for h in 0..<heads {
                var channel = [Double](repeating: 0, count: hd)
                for t in 0..<n { for d in 0..<hd { channel[d] += Double(abs(a[(h * n + t) * hd + d])) } }
                let sorted = channel.sorted()
                total += sorted.last! / max(sorted[hd / 2], 1e-20)
            }
            return total / Double(heads)
        }
        keyOutlierRatio = outlierRatio(kv.keys)
        valueOutlierRatio = outlierRatio(kv.values)
        var sinkNorm = 0.0, meanNorm = 0.0
        for h in 0..<heads {
            for t in 0..<n {
                var s: Float = 0
                for d in 0..<hd { s += kv.values[(h * n + t) * hd + d] * kv.values[(h * n + t) * hd + d] }
                if t == 0 { sinkNorm += Double(s.squareRoot()) } else { meanNorm += Double(s.squareRoot()) / Double(n - 1) }
            }
        }
        sinkValueNormRatio = sinkNorm / max(meanNorm, 1e-20)

        let isVision = (0..<n).map { t in vision.contains { $0.start <= t && t < $0.end } }
        let focusSet = Set(focus)
        focusShare = Double(focus.count) / Double(max(visionTokens.count, 1))
        var focusSum = 0.0, topSum = 0.0, entropySum = 0.0, sinkSum = 0.0, visionSum = 0.0, queries = 0
        if let block = snapshot.queries(snapshot.layers[layer].promptQuery) {
            let group = block.heads / heads
            let scale = 1 / Float(hd).squareRoot()
            var logits = [Float](repeating: 0, count: n)
            for qh in 0..<block.heads {
                let h = qh / group
                for j in 0..<block.count {
                    let q = (qh * block.count + j) * hd
                    var maxLogit = -Float.infinity
                    for t in 0..<n {
                        var s: Float = 0
                        for d in 0..<hd { s += block.values[q + d] * kv.keys[(h * n + t) * hd + d] }
                        logits[t] = s * scale
                        maxLogit = max(maxLogit, logits[t])
                    }
                    var total = 0.0
                    var p = [Double](repeating: 0, count: n)
                    for t in 0..<n { p[t] = exp(Double(logits[t] - maxLogit)); total += p[t] }
                    var visionTotal = 0.0, focusTotal = 0.0
                    var visionP: [Double] = []
                    for t in 0..<n {
                        p[t] /= total
                        if isVision[t] { visionTotal += p[t]; visionP.append(p[t]) }
                        if focusSet.contains(t) { focusTotal += p[t] }
                    }
                    sinkSum += p[0]
                    visionSum += visionTotal
                    focusSum += focusTotal / max(visionTotal, 1e-300)
                    visionP.sort(by: >)
                    let top = max(1, visionP.count / 10)
                    topSum += visionP.prefix(top).reduce(0, +) / max(visionTotal, 1e-300)
                    var entropy = 0.0
                    for v in visionP where v > 0 { let r = v / visionTotal; entropy -= r * log(r) }
                    entropySum += visionP.count > 1 ? entropy / log(Double(visionP.count)) : 0
                    queries += 1
                }
            }
        }
        let q = Double(max(queries, 1))
        focusMass = focusSum / q; topDecileMass = topSum / q; normalizedVisionEntropy = entropySum / q
        sinkMass = sinkSum / q; visionMass = visionSum / q
    }

    public var description: String {
        func f(_ x: Double) -> String { String(format: "%.3f", x) }
        return "layer \(layer): key cos neighbour \(f(neighbourKeyCosine)) random \(f(randomKeyCosine)); "
            + "value cos neighbour \(f(neighbourValueCosine)) random \(f(randomValueCosine)); "
            + "prompt attention: sink \(f(sinkMass)), vision \(f(visionMass)), focus \(f(focusMass)) of vision "
            + "(uniform \(f(focusShare))), top-10% \(f(topDecileMass)), entropy \(f(normalizedVisionEntropy)); "
            + "outlier ratio key \(f(keyOutlierRatio)) value \(f(valueOutlierRatio)); sink value norm \(f(sinkValueNormRatio))"
    }
}
