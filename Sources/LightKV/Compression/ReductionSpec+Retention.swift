/// What a reduction will keep on an input of a given shape, and the refusal of targets it
/// cannot reach: a policy that asks for 10% keeps 10%, or says why not.
extension ReductionSpec {
    /// How far the average vision retention may land from the requested one: one percentage
    /// point, or half an entry per layer where an input has so few vision tokens (under 50)
    /// that one entry is worth more than two points.
    public static let retentionTolerance = 0.01

    public static func retentionTolerance(visionTokens n: Int) -> Double {
        max(retentionTolerance, 0.5 / Double(max(n, 1)))
    }

    /// The requested average vision retention (0…1), nil where the reduction asks for none
    /// (`none`, `lightkv` with explicit stages or the reference schedule's own ratio).
    public var requestedRetention: Double? {
        switch self {
        case .none: nil
        case .lightkv(let s): s.stages == nil ? s.retention : nil
        case .baseline(let b): b.retention
        case .aircache(let a): a.retention
        }
    }

    /// Average vision retention over layers this reduction keeps on an uncompressed input
    /// with `layerCount` layers and these spans (entry counts are fixed by the shape alone).
    public func predictedRetention(layerCount: Int, spans: [Span]) -> Double {
        let layout = VisionLayout(spans: spans, seqLen: spans.last?.end ?? 0)
        let n = layout.visionTokenCount
        guard n > 0, layerCount > 0 else { return 1 }
        let perLayer: [Int]
        switch self {
        case .none:
            return 1
        case .lightkv(let s):
            let schedule = s.mergeSchedule(layerCount: layerCount)
            guard s.stages == nil else { return schedule.nominalAverageRetention }
            perLayer = (0..<layerCount).map { l in
                let f = schedule.nominalKeepFraction(layer: l)
                return f >= 1 ? n : max(layout.frames.count, Int((f * Double(n)).rounded()))
            }
        case .baseline(let b) where b.profile == .adaptive:
            return ReductionSpec.aircache(b.adaptiveSelection).predictedRetention(layerCount: layerCount, spans: spans)
        case .baseline(let b):
            let fractions = b.layerFractions(layerCount: layerCount)
            perLayer = fractions.map { f in
                guard f < 1 else { return n }
                switch b.method {
                case .tome: return max(layout.frames.count, Int((f * Double(n)).rounded()))
                case .promptTopK: return max(1, min(n, Int((f * Double(n)).rounded())))
                case .uniform, .random:
                    return spans.filter(\.isVision).reduce(0) { $0 + max(1, min($1.count, Int((f * Double($1.count)).rounded()))) }
                }
            }
        case .aircache(let a):
            return Double(a.totalBudget(layerCount: layerCount, visionTokens: n, frames: layout.frames.count))
                / Double(layerCount * n)
        }
        return Double(perLayer.reduce(0, +)) / Double(layerCount * n)
    }

    /// Refuses a requested retention this reduction cannot reach within `retentionTolerance(visionTokens:)`
    /// on an input of this shape, naming the policy, the shape and what it would keep instead.
    public func checkRetention(layerCount: Int, spans: [Span]) throws(PolicyError) {
        guard let requested = requestedRetention else { return }
        let predicted = predictedRetention(layerCount: layerCount, spans: spans)
        let n = spans.visionTokenCount
        guard abs(predicted - requested) > Self.retentionTolerance(visionTokens: n) else { return }
        let frames = VisionLayout(spans: spans, seqLen: spans.last?.end ?? 0).frames.count
        throw .unreachable(policy: name, why: String(
            format: "asks for %.0f%% of the vision tokens on average but would keep %.1f%% of %d vision tokens in %d frame(s) over %d layer(s) (at least one entry per frame, and a merge stage keeps at least 5%% of what stands)",
            100 * requested, 100 * predicted, n, frames, layerCount))
    }
}
