/// Which entries of a layer stay exact (F16) instead of being quantized.
///
/// KIVI and the attention-sink literature agree on what quantization hurts most: the first few
/// tokens (attention sinks soak up probability mass, so their keys must stay sharp), the text
/// (the prompt that asks the question; it is also small next to the vision spans) and, after
/// merging, entries standing for many tokens (their logit carries `log(size)`, so an error there
/// weighs on many tokens at once).
///
/// ```swift
/// let kept = KeepRule.standard.keptEntries(positions: layer.positions, sizes: layer.sizes, spans: spans)
/// ```
public struct KeepRule: Sendable, Equatable {
    /// Keep entries whose position lies in a text span.
    public var text: Bool
    /// Keep entries whose original position is below this (attention sinks).
    public var sinks: Int
    /// Keep entries whose size is at least this; 0 turns the rule off.
    public var minSize: Int
    /// Keep this percentage of each layer's vision entries, those the prompt attends most
    /// (`PromptAttention`), exact: bits where attention goes. 0 turns the rule off.
    public var attended: Int = 0

    public init(text: Bool, sinks: Int, minSize: Int, attended: Int = 0) {
        precondition(sinks >= 0 && minSize >= 0 && (0...100).contains(attended), "keep rule settings are counts")
        self.text = text; self.sinks = sinks; self.minSize = minSize; self.attended = attended
    }

    /// Text, the first 4 positions, and entries merged from 8 or more tokens.
    public static let standard = KeepRule(text: true, sinks: 4, minSize: 8)
    /// Quantize everything.
    public static let nothing = KeepRule(text: false, sinks: 0, minSize: 0)

    /// Indices (ascending) of the entries this rule keeps exact.
    ///
    /// `positions` are the entries' original positions and `spans` tile the original sequence,
    /// so an entry is text iff its position lies in a text span.
    public func keptEntries(positions: [Int32], sizes: [Int32], spans: [Span]) -> [Int] {
        let textRanges = text ? spans.filter { $0.kind == .text }.map { $0.start..<$0.end } : []
        var kept: [Int] = []
        for j in positions.indices {
            let p = Int(positions[j])
            if p < sinks || (minSize > 0 && Int(sizes[j]) >= minSize) || Self.contains(textRanges, p) {
                kept.append(j)
            }
        }
        return kept
    }

    /// Binary search over sorted, disjoint ranges.
    private static func contains(_ ranges: [Range<Int>], _ p: Int) -> Bool {
        var lo = 0, hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].upperBound <= p { lo = mid + 1 } else { hi = mid }
        }
        return lo < ranges.count && ranges[lo].contains(p)
    }
}

extension KeepRule {
    /// `keptEntries`, plus (with `attended > 0`) the most attended `attended`% of the layer's
    /// vision entries, weighed by the layer's prompt queries (or prompt keys) as LightKV weighs.
    public func keptEntries(layer: KVLayer, context: LayerContext) -> [Int] {
        let base = keptEntries(positions: layer.positions, sizes: layer.sizes, spans: context.spans)
        guard attended > 0 else { return base }
        let layout = VisionLayout(spans: context.spans, seqLen: context.seqLen)
        let vision = layer.positions.indices.filter { layout.isVision(layer.positions[$0]) }
        let quota = Int((Double(attended) / 100 * Double(vision.count)).rounded())
        guard quota > 0 else { return base }
        let weights = PromptAttention.guide(.query, layer: layer, promptQuery: context.promptQuery,
                                            promptRange: layout.promptRange, entries: vision).weights
        let order = vision.indices.sorted { weights[$0] > weights[$1] || (weights[$0] == weights[$1] && $0 < $1) }
        return Array(Set(base).union(order.prefix(quota).map { vision[$0] })).sorted()
    }
}