/// The drop baselines: `uniform`, `random` and `prompt-topk` keep a subset of each layer's
/// vision entries as they are and drop the rest (sizes unchanged).
///
/// Each layer keeps `round(f·N)` entries, `f` the layer's share under the settings' profile
/// (`MergeSchedule.nominalKeepFraction`, or the target itself for `flat`), and `N` the
/// original vision tokens (of each span for `uniform` and `random`, of all spans for
/// `prompt-topk`), never more than the layer holds and at least one per span.
public struct SelectionCompressor: CacheCompressor {
    public let settings: BaselineSettings
    private var layout: VisionLayout?
    private var fractions: [Double] = []
    private var sources: Set<String> = []

    public init(settings: BaselineSettings) {
        precondition(settings.method != .tome, "tome merges: use LightKVCompressor(tome:)")
        self.settings = settings
    }

    public var record: [String: String] {
        var r = ["method": settings.method.rawValue, "profile": settings.profile.rawValue, "reference": settings.schedule.rawValue]
        if let t = settings.retention { r["target_retention"] = String(format: "%.2f", t) }
        if settings.method == .random { r["seed"] = String(settings.seed) }
        if settings.method == .promptTopK { r["guidance"] = sources.sorted().joined(separator: "; ") }
        return r
    }

    public mutating func compress(_ layer: KVLayer, context: LayerContext) -> KVLayer {
        if layout == nil {
            layout = VisionLayout(spans: context.spans, seqLen: context.seqLen)
            fractions = settings.layerFractions(layerCount: context.layerCount)
        }
        let layout = layout!
        let f = fractions[context.index]
        guard f < 1 else { return layer }

        var keep: [Int] = []
        var bySpan: [Int: [Int]] = [:]
        var vision: [Int] = []
        for j in 0..<layer.count {
            let p = layer.positions[j]
            if layout.isVision(p) {
                bySpan[Int(layout.spanOfPosition[Int(p)]), default: []].append(j)
                vision.append(j)
            } else {
                keep.append(j)
            }
        }
        switch settings.method {
        case .uniform, .random:
            for (s, entries) in bySpan {
                let c = max(1, min(entries.count, Int((f * Double(context.spans[s].count)).rounded())))
                if settings.method == .uniform {
                    let n = entries.count
                    keep += (0..<c).map { entries[Int((Double($0) + 0.5) * Double(n) / Double(c))] }
                } else {
                    keep += entries.sorted { rank(layer.positions[$0], span: s) < rank(layer.positions[$1], span: s) }.prefix(c)
                }
            }
        case .promptTopK:
            let guided = PromptAttention.guide(.query, layer: layer, promptQuery: context.promptQuery,
                                               promptRange: layout.promptRange, entries: vision)
            sources.insert(guided.source.rawValue)
            let c = max(1, min(vision.count, Int((f * Double(layout.visionTokenCount)).rounded())))
            let order = vision.indices.sorted { guided.weights[$0] > guided.weights[$1] || (guided.weights[$0] == guided.weights[$1] && $0 < $1) }
            keep += order.prefix(c).map { vision[$0] }
        case .tome:
            preconditionFailure("tome is a merge")
        }
        return layer.selecting(keep.sorted())
    }

    /// A fixed pseudo-random rank of each position (SplitMix64 of seed, span and position), so
    /// `random` keeps the same nested subset in every layer and every run.
    private func rank(_ position: Int32, span: Int) -> UInt64 {
        var z = settings.seed &+ UInt64(span) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(position) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
