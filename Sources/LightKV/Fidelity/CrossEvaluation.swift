/// Snapshots that cannot be compared as questions about one prefix.
public enum CrossEvaluationError: Error, Equatable, CustomStringConvertible {
    case tooFew(Int)
    case prefixDiffers(snapshot: Int, problem: String)
    case noProbes(snapshot: Int)
    case evaluation(EvaluationError)

    public var description: String { description(naming: []) }

    /// The message with each snapshot called by its name in `names` (its file), where given.
    public func description(naming names: [String]) -> String {
        func name(_ i: Int) -> String { i < names.count ? names[i] : "snapshot \(i + 1)" }
        switch self {
        case .tooFew(let n):
            return "--cross compares questions about one prefix: give at least 2 snapshots that share it, got \(n) (kvstore synth --questions N writes such)"
        case .prefixDiffers(let i, let problem): return "\(name(i)) does not share the first one's prefix (\(name(0))): \(problem)"
        case .noProbes(let i): return "\(name(i)) has no probe_query: --cross measures each question with its own probe queries"
        case .evaluation(let e): return "\(e)"
        }
    }
}

/// What a policy guided by one question does to the next question about the same prefix
/// (issue "reuse means a new question"; docs/FIDELITY.md, "Same and new question").
///
/// Every snapshot holds one question about a shared prefix (system text and media, the
/// positions before the first prompt span, identical in all of them). For each snapshot `a`
/// the policy compresses `a` as ingest would (guided by `a`'s prompt queries); its prefix is
/// kept and decoded, and every question `b` is then answered over that prefix followed by `b`'s
/// own prompt entries, exact, as a serving node would prefill them on top of a fetched prefix.
/// The error is the probe queries' attention output against the same over the exact cache of
/// `b`: for `b == a` the question the compression was guided by ("same"), for `b != a` the
/// others ("new"), averaged over layers, then over `a` (and `b`).
public struct CrossEvaluation: Sendable, Codable {
    public var policy: String
    /// Vision entries of the prefix kept, over the prefix's vision tokens (mean over snapshots).
    public var visionRetention: Double
    /// Relative attention-output error (proportional attention), same and new question.
    public var same: OutputAgreement
    public var new: OutputAgreement
    /// `new / same` relative error: how much guidance by the wrong question costs.
    public var ratio: Double { same.relativeError > 0 ? new.relativeError / same.relativeError : (new.relativeError > 0 ? .infinity : 1) }

    enum CodingKeys: String, CodingKey { case policy, visionRetention, same, new, ratio }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(policy, forKey: .policy)
        try c.encode(visionRetention, forKey: .visionRetention)
        try c.encode(same, forKey: .same)
        try c.encode(new, forKey: .new)
        try c.encode(ratio.isFinite ? ratio : -1, forKey: .ratio)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        policy = try c.decode(String.self, forKey: .policy)
        visionRetention = try c.decode(Double.self, forKey: .visionRetention)
        same = try c.decode(OutputAgreement.self, forKey: .same)
        new = try c.decode(OutputAgreement.self, forKey: .new)
    }

    public init(snapshots: [Snapshot], policy: Policy) throws(CrossEvaluationError) {
        guard snapshots.count >= 2 else { throw .tooFew(snapshots.count) }
        let first = snapshots[0]
        let end = first.metadata.prefixEnd(seqLen: first.seqLen)
        for (i, s) in snapshots.enumerated() {
            if let problem = Self.prefixMismatch(first, s, end: end) { throw .prefixDiffers(snapshot: i, problem: problem) }
            guard s.layers.allSatisfy({ $0.probeQuery != nil }) else { throw .noProbes(snapshot: i) }
        }
        let layout = VisionLayout(spans: first.metadata.spans, seqLen: first.seqLen)
        let prefixVision = (0..<end).filter { layout.isVision(Int32($0)) }.count
        var same: [OutputAgreement] = [], new: [OutputAgreement] = [], retention: [Double] = []
        for (a, guide) in snapshots.enumerated() {
            var encoder = SnapshotEncoder(snapshot: guide, policy: policy)
            do { try encoder.checkRetention() } catch { throw .evaluation(.policy(error)) }
            var sameLayers: [OutputAgreement] = [], newLayers: [OutputAgreement] = [], kept = 0
            for i in 0..<guide.layerCount {
                let input = guide.floatLayer(i)
                let decoded: KVLayer
                do { decoded = try PolicyEvaluation.decode(encoder.encode(i), like: input, layer: i) } catch { throw .evaluation(error) }
                let prefix = Self.entries(of: decoded) { Int($0) < end }
                kept += prefix.positions.filter { layout.isVision($0) }.count
                for (b, asked) in snapshots.enumerated() {
                    let exact = asked.floatLayer(i)
                    let cache = Self.joined(prefix, Self.entries(of: exact) { Int($0) >= end })
                    let probes = asked.queries(asked.layers[i].probeQuery)!
                    let reference = AttentionOutput.compute(queries: probes, layer: exact, proportional: true)
                    let output = AttentionOutput.compute(queries: probes, layer: cache, proportional: true)
                    let agreement = OutputAgreement(reference: reference, approximate: output,
                                                    rows: probes.heads * probes.count, dim: exact.vHeadDim)
                    if a == b { sameLayers.append(agreement) } else { newLayers.append(agreement) }
                }
            }
            same.append(.mean(sameLayers)); new.append(.mean(newLayers))
            retention.append(prefixVision == 0 ? 1 : Double(kept) / Double(prefixVision * guide.layerCount))
        }
        self.policy = policy.name
        self.visionRetention = retention.reduce(0, +) / Double(retention.count)
        self.same = .mean(same)
        self.new = .mean(new)
    }

    /// Why `other` does not hold `first`'s prefix `[0, end)`, or nil when it does: model, spans
    /// before the prompt, token ids where both have them, and layer 0's keys and values there.
    static func prefixMismatch(_ first: Snapshot, _ other: Snapshot, end: Int) -> String? {
        if other.metadata.model != first.metadata.model { return "model \(other.metadata.model), not \(first.metadata.model)" }
        if other.metadata.prefixEnd(seqLen: other.seqLen) != end { return "its prompt starts at \(other.metadata.prefixEnd(seqLen: other.seqLen)), not \(end)" }
        if other.metadata.spans.filter({ $0.end <= end }) != first.metadata.spans.filter({ $0.end <= end }) { return "its spans before the prompt differ" }
        if let x = first.tokenIDs(), let y = other.tokenIDs(), x.prefix(end) != y.prefix(end) { return "its input_ids differ before the prompt" }
        if other.isCompressed || first.isCompressed { return "an already-compressed input has no exact prefix to compare" }
        let a = first.floatLayer(0), b = other.floatLayer(0)
        if entries(of: a, { Int($0) < end }) != entries(of: b, { Int($0) < end }) { return "layer 0's keys or values differ before the prompt" }
        return nil
    }

    /// The entries of `layer` whose position satisfies `keep`, in order.
    static func entries(of layer: KVLayer, _ keep: (Int32) -> Bool) -> KVLayer {
        let chosen = layer.positions.indices.filter { keep(layer.positions[$0]) }
        func gather(_ data: [Float], dim: Int) -> [Float] {
            var out: [Float] = []
            out.reserveCapacity(layer.kvHeads * chosen.count * dim)
            for h in 0..<layer.kvHeads {
                for j in chosen { out += data[((h * layer.count + j) * dim)..<((h * layer.count + j + 1) * dim)] }
            }
            return out
        }
        return KVLayer(kvHeads: layer.kvHeads, headDim: layer.headDim, vHeadDim: layer.vHeadDim,
                       keys: gather(layer.keys, dim: layer.headDim), values: gather(layer.values, dim: layer.vHeadDim),
                       positions: chosen.map { layer.positions[$0] }, sizes: chosen.map { layer.sizes[$0] })
    }

    /// `head` followed by `tail` (positions of `tail` after those of `head`).
    static func joined(_ head: KVLayer, _ tail: KVLayer) -> KVLayer {
        func join(_ x: [Float], _ y: [Float], dim: Int) -> [Float] {
            var out: [Float] = []
            out.reserveCapacity(x.count + y.count)
            for h in 0..<head.kvHeads {
                out += x[(h * head.count * dim)..<((h + 1) * head.count * dim)]
                out += y[(h * tail.count * dim)..<((h + 1) * tail.count * dim)]
            }
            return out
        }
        return KVLayer(kvHeads: head.kvHeads, headDim: head.headDim, vHeadDim: head.vHeadDim,
                       keys: join(head.keys, tail.keys, dim: head.headDim), values: join(head.values, tail.values, dim: head.vHeadDim),
                       positions: head.positions + tail.positions, sizes: head.sizes + tail.sizes)
    }
}

extension OutputAgreement {
    /// The mean of several agreements.
    static func mean(_ all: [OutputAgreement]) -> OutputAgreement {
        let n = Double(max(all.count, 1))
        return OutputAgreement(cosine: all.reduce(0) { $0 + $1.cosine } / n, relativeError: all.reduce(0) { $0 + $1.relativeError } / n)
    }
}
