/// One synthesized layer as floats, in the kvsnap shapes.
public struct SynthLayer: Sendable {
    /// `[kvHeads, seqLen, headDim]`, RoPE applied.
    public var keys: [Float]
    /// `[kvHeads, seqLen, headDim]`.
    public var values: [Float]
    /// `[qHeads, m, headDim]`, RoPE applied at the last `m` prompt positions.
    public var promptQueries: [Float]
    /// `[qHeads, p, headDim]`, RoPE applied at positions `seqLen..<seqLen+p`.
    public var probeQueries: [Float]
}

extension SnapshotSynthesizer {
    /// Logit (after the 1/√d scale) by which a focused query prefers its object over the average
    /// vision token. The first two layers attend broadly (FastV: image attention turns sparse
    /// only after layer 2), later ones sharply.
    func focusLogit(layer l: Int) -> Float { l < 2 ? 1.5 : 3.0 }
    /// Logit of the sink token for every query; weak in the first two layers (StreamingLLM).
    func sinkLogit(layer l: Int) -> Float { l < 2 ? 2.0 : 8.5 }
    /// Norm of the sink key's component along the sink direction.
    var sinkKeyMagnitude: Float { 2 * Float(spec.headDim).squareRoot() }

    /// Latent features of every token at `layer`: deeper layers mix more. Image tokens blend with
    /// their 3×3 neighbourhood (weight 0.6·depth) and then with their image's mean
    /// (0.25·depth); text tokens with their span's mean (0.3·depth). Mixing stays inside a span so
    /// a shared prefix or image keeps identical features whatever follows it.
    public func latentFeatures(layer l: Int) -> [Float] {
        let dim = SynthModel.latentDim
        let depth = model.depth(l)
        var x = baseFeatures
        if depth == 0 { return x }
        let blur = 0.6 * depth, pull = 0.25 * depth, textPull = 0.3 * depth
        let rows = spec.gridRows, cols = spec.gridCols
        for start in imageStarts {
            let base = baseFeatures
            var mean = [Float](repeating: 0, count: dim)
            for f in 0..<spec.frames {
                for r in 0..<rows {
                    for c in 0..<cols {
                        var sum = [Float](repeating: 0, count: dim)
                        var n: Float = 0
                        for rr in max(0, r - 1)...min(rows - 1, r + 1) {
                            for cc in max(0, c - 1)...min(cols - 1, c + 1) {
                                let t = start + (f * rows + rr) * cols + cc
                                for d in 0..<dim { sum[d] += base[t * dim + d] }
                                n += 1
                            }
                        }
                        let t = start + (f * rows + r) * cols + c
                        for d in 0..<dim {
                            x[t * dim + d] = (1 - blur) * base[t * dim + d] + blur * sum[d] / n
                            mean[d] += base[t * dim + d]
                        }
                    }
                }
            }
            let count = Float(spec.tokensPerImage)
            for k in 0..<spec.tokensPerImage {
                let t = start + k
                for d in 0..<dim { x[t * dim + d] = (1 - pull) * x[t * dim + d] + pull * mean[d] / count }
            }
        }
        for span in spans where span.kind == .text {
            let first = max(span.start, 1)  // the sink token keeps its own feature
            guard first < span.end else { continue }
            var mean = [Float](repeating: 0, count: dim)
            for t in first..<span.end { for d in 0..<dim { mean[d] += baseFeatures[t * dim + d] } }
            let n = Float(span.end - first)
            for t in first..<span.end {
                for d in 0..<dim { x[t * dim + d] = (1 - textPull) * x[t * dim + d] + textPull * mean[d] / n }
            }
        }
        return x
    }

    /// Generates layer `l`.
    public func layer(_ l: Int) -> SynthLayer {
        let dim = SynthModel.latentDim, hd = spec.headDim, seqLen = spec.seqLen
        let x = latentFeatures(layer: l)
        var keys = [Float](repeating: 0, count: spec.kvHeads * seqLen * hd)
        var values = [Float](repeating: 0, count: spec.kvHeads * seqLen * hd)
        var heads: [SynthModel.Head] = []
        for h in 0..<spec.kvHeads {
            let head = model.head(layer: l, head: h)
            heads.append(head)
            x.withUnsafeBufferPointer { xb in
                head.keyProjection.withUnsafeBufferPointer { wk in
                    head.valueProjection.withUnsafeBufferPointer { wv in
                        keys.withUnsafeMutableBufferPointer { kb in
                            values.withUnsafeMutableBufferPointer { vb in
                                let keyNoise = self.keyNoise
                                for t in 0..<seqLen {
                                    let k = kb.baseAddress! + (h * seqLen + t) * hd
                                    let v = vb.baseAddress! + (h * seqLen + t) * hd
                                    for d in 0..<hd { k[d] = head.keyBias[d] }
                                    LatentProjection.accumulate(xb.baseAddress! + t * dim, wk.baseAddress!, into: k, latentDim: dim, headDim: hd)
                                    LatentProjection.accumulate(xb.baseAddress! + t * dim, wv.baseAddress!, into: v, latentDim: dim, headDim: hd)
                                    var rng = SynthRandom(mixing: tokenIdentity[t], UInt64(l), UInt64(h))
                                    rng.addNormal(k, count: hd, scale: keyNoise)
                                    rng.addNormal(v, count: hd, scale: Self.valueNoise)
                                    if t == 0 {
                                        for d in 0..<hd {
                                            k[d] += sinkKeyMagnitude * head.sinkDirection[d]
                                            v[d] *= Self.sinkValueScale
                                        }
                                    }
                                    rope.apply(k, position: t)
                                }
                            }
                        }
                    }
                }
            }
        }
        return SynthLayer(keys: keys, values: values,
                          promptQueries: queries(layer: l, keys: keys, heads: heads, positions: promptQueryPositions, probe: false),
                          probeQueries: queries(layer: l, keys: keys, heads: heads, positions: probeQueryPositions, probe: true))
    }

    /// Queries `[qHeads, positions.count, headDim]` at `layer`, built from that layer's keys.
    ///
    /// A query seeks a target (the focus object; for probes also another object or the prompt).
    /// It is built directly in post-RoPE space as a matched filter: the mean key of the target's
    /// tokens, made orthogonal to the mean text key, the sink key and the mean keys of the other
    /// image regions (objects and backgrounds), so that what is distinctive about the target is
    /// what raises logits; then tilted per head and per token (random directions orthogonal to
    /// the mean vision, text and sink keys) and scaled so the target's tokens average a logit of
    /// `focusLogit`. Then the sink direction is added, scaled to `sinkLogit`. Any post-RoPE vector is the
    /// rotation of some pre-RoPE query (`R(−position)·q`), so this is a query "with RoPE applied";
    /// building it after rotation keeps the focus independent of how many slow RoPE pairs
    /// `headDim` has.
    func queries(layer l: Int, keys: [Float], heads: [SynthModel.Head], positions: Range<Int>, probe: Bool) -> [Float] {
        let count = positions.count
        guard count > 0 else { return [] }
        let hd = spec.headDim, seqLen = spec.seqLen
        let group = spec.qHeads / spec.kvHeads
        let visionTokens = spans.filter(\.isVision).flatMap { Array($0.start..<$0.end) }
        let textTokens = spans.filter { !$0.isVision }.flatMap { Array($0.start..<$0.end) }.filter { $0 > 0 }
        let promptSpan = spans.last!
        // Token sets of every object and of each image's background: what a focused query must
        // tell its target apart from.
        var regions: [[Int]] = []
        var focusRegion = 0
        for (i, scene) in scenes.enumerated() {
            for k in -1..<scene.objects.count {
                let tokens = scene.labels.indices.filter { scene.labels[$0] == Int16(k) }.map { imageStarts[i] + $0 }
                if i == focusImage && k == focusObject { focusRegion = regions.count }
                if !tokens.isEmpty { regions.append(tokens) }
            }
        }
        var rng = SynthRandom(spec.seed, UInt64(l), probe ? 0x960BE : 0x960B7)
        let candidates = regions.indices.filter { $0 != focusRegion }
        let otherRegion = candidates.isEmpty ? focusRegion : candidates[rng.below(candidates.count)]
        // Targets: 0 = focus object, 1 = another object or background, 2 = the prompt text.
        let targets = [focusPositions, regions[otherRegion], Array(promptSpan.start..<promptSpan.end)]
        let targetRegions: [Int?] = [focusRegion, otherRegion, nil]
        let scale = Float(hd).squareRoot()

        var out = [Float](repeating: 0, count: spec.qHeads * count * hd)
        for h in 0..<spec.kvHeads {
            func meanKey(_ tokens: [Int]) -> [Float] {
                var m = [Float](repeating: 0, count: hd)
                for t in tokens { for d in 0..<hd { m[d] += keys[(h * seqLen + t) * hd + d] } }
                return m.map { $0 / Float(max(tokens.count, 1)) }
            }
            let common = [meanKey(visionTokens), meanKey(textTokens), meanKey([0])]
            let basis = orthonormalize(common)
            let regionKeys = regions.map(meanKey)
            func residual(_ v: [Float], _ basis: [[Float]]) -> [Float] {
                var v = v
                for b in basis {
                    let c = dot(v, b)
                    for d in 0..<hd { v[d] -= c * b[d] }
                }
                return v
            }
            func unit(_ v: [Float]) -> [Float] {
                let n = max(dot(v, v).squareRoot(), 1e-20)
                return v.map { $0 / n }
            }
            func orthogonalUnit(_ v: [Float], to basis: [[Float]]) -> [Float]? {
                let r = residual(v, basis)
                return dot(r, r) > 1e-12 ? unit(r) : nil
            }
            // A target's direction is its mean key with the text mean, the sink key and the most
            // similar other regions' mean keys projected out (a cheap linear discriminant), using
            // at most half the head's dimensions so that enough of the target's own signal
            // survives; where too little survives, only the common means are removed.
            let targetKeys = zip(targets, targetRegions).map { tokens, region -> [Float] in
                let own = residual(meanKey(tokens), basis)
                let ownNorm = dot(own, own).squareRoot()
                let rivals = regionKeys.indices.filter { $0 != region }
                    .map { (index: $0, key: unit(residual(regionKeys[$0], basis))) }
                    .sorted { abs(dot($0.key, own)) > abs(dot($1.key, own)) }
                    .prefix(max(0, hd / 2 - common.count))
                // The vision mean is a weighted mean of all regions, so it stays out of the
                // contrast: with it, the other regions would span the target's own mean.
                let contrast = orthonormalize(Array(common.dropFirst()) + rivals.map { regionKeys[$0.index] })
                let r = residual(meanKey(tokens), contrast)
                if dot(r, r).squareRoot() > 0.05 * ownNorm { return unit(r) }
                return ownNorm > 1e-6 ? unit(own) : basis[0]
            }
            let sink = heads[h].sinkDirection
            for qh in (h * group)..<((h + 1) * group) {
                let headGain = rng.uniform(0.7...1.3)
                let sinkGain = rng.uniform(0.8...1.2)
                let headTilt = orthogonalUnit(rng.normals(hd), to: basis) ?? basis[0]
                for j in 0..<count {
                    // Probes: half on the focus object, a quarter on another object, a quarter on the prompt.
                    let kind = probe ? [0, 0, 1, 2][j % 4] : 0
                    let target = targetKeys[kind]
                    let tilt = orthogonalUnit(rng.normals(hd), to: basis) ?? basis[0]
                    var direction = target
                    for d in 0..<hd { direction[d] += 0.15 * headTilt[d] + 0.15 * tilt[d] }
                    // Scale so the target's mean key scores focusLogit.
                    let targetScore = dot(direction, meanKey(targets[kind]))
                    let reach = dot(residual(meanKey(targets[kind]), basis), target)
                    // The cap keeps a degenerate target (keys barely distinct) from producing a
                    // huge query that would overflow F16; typical |q| is about 2·√headDim.
                    let gain = min(focusLogit(layer: l) * headGain * scale / max(targetScore, 0.5 * abs(reach), 1e-6),
                                   8 * scale)
                    var along: Float = 0
                    for d in 0..<hd { along += direction[d] * sink[d] }
                    let sinkCoefficient = sinkLogit(layer: l) * sinkGain * scale / sinkKeyMagnitude
                    let q = (qh * count + j) * hd
                    for d in 0..<hd { out[q + d] = gain * (direction[d] - along * sink[d]) + sinkCoefficient * sink[d] }
                }
            }
        }
        return out
    }

    private func dot(_ a: [Float], _ b: [Float]) -> Float {
        var s: Float = 0
        for i in a.indices { s += a[i] * b[i] }
        return s
    }

    /// Gram–Schmidt; drops vectors that are (numerically) in the span of earlier ones.
    private func orthonormalize(_ vectors: [[Float]]) -> [[Float]] {
        var out: [[Float]] = []
        for var v in vectors {
            for b in out {
                let c = dot(v, b)
                for d in v.indices { v[d] -= c * b[d] }
            }
            let n = dot(v, v).squareRoot()
            if n > 1e-6 { out.append(v.map { $0 / n }) }
        }
        return out
    }
}
