/// Divides a budget of entries among layers by need: the adaptive per-layer budget that
/// `aircache`, `airmerge` and `prompt-topk:profile=adaptive` share.
///
/// Each layer brings the importance of each of its vision entries in a common unit (the
/// attention mass its observers give the entry, so a layer that looks at the image little
/// brings small numbers). Every layer first gets its floor; the rest of the budget goes to the
/// entries with the highest importance over all layers, each layer filled from its most
/// important entry down, never past its ceiling. That keeps the most observed attention mass
/// possible for the budget: a strong, skewed layer (a few entries hold its attention) is
/// satisfied with few entries, a flat one needs many, and a layer whose observers barely look
/// at the image gives its share to one that does.
///
///     LayerBudget.allocate(importance: [[0.5, 0.3, 0.1], [0.2, 0.2, 0.2]], total: 4,
///                          floors: [1, 1], ceilings: [3, 3])   // [2, 2]
public enum LayerBudget {
    /// Entries per layer: `floors[l] ≤ n[l] ≤ min(ceilings[l], importance[l].count)`, summing to
    /// `total` clamped into what the floors and ceilings allow. Ties go to the earlier layer.
    public static func allocate(importance: [[Float]], total: Int, floors: [Int], ceilings: [Int]) -> [Int] {
        precondition(importance.count == floors.count && floors.count == ceilings.count, "one floor and one ceiling per layer")
        let caps = importance.indices.map { min(ceilings[$0], importance[$0].count) }
        var counts = importance.indices.map { min(max(floors[$0], 0), caps[$0]) }
        var left = min(total, caps.reduce(0, +)) - counts.reduce(0, +)
        guard left > 0 else { return counts }
        var candidates: [(value: Float, layer: Int)] = []
        for (l, values) in importance.enumerated() where counts[l] < caps[l] {
            let sorted = values.sorted(by: >)
            for r in counts[l]..<caps[l] { candidates.append((sorted[r], l)) }
        }
        candidates.sort { $0.value > $1.value || ($0.value == $1.value && $0.layer < $1.layer) }
        for c in candidates where left > 0 {
            counts[c.layer] += 1
            left -= 1
        }
        return counts
    }
}

extension LayerBudget {
    /// Entries per layer so that every layer keeps the same share of its own importance: the
    /// fewest entries (most important first) that reach a common coverage, the coverage solved
    /// for so the counts sum to `total` (clamped into floors and ceilings; the last few entries
    /// by `allocate`'s rule). A flat layer needs many entries to cover the share, a skewed one
    /// few; how strongly a layer looks at the image does not enter.
    public static func equalCoverage(importance: [[Float]], total: Int, floors: [Int], ceilings: [Int]) -> [Int] {
        precondition(importance.count == floors.count && floors.count == ceilings.count, "one floor and one ceiling per layer")
        let caps = importance.indices.map { min(ceilings[$0], importance[$0].count) }
        let lows = importance.indices.map { min(max(floors[$0], 0), caps[$0]) }
        // Cumulative normalised importance of each layer, most important first.
        let cumulative: [[Double]] = importance.map { values in
            let sorted = values.sorted(by: >)
            let sum = max(sorted.reduce(0.0) { $0 + Double($1) }, 1e-30)
            var acc = 0.0
            return sorted.map { acc += Double($0) / sum; return acc }
        }
        func counts(_ coverage: Double) -> [Int] {
            importance.indices.map { l in
                let reach = (cumulative[l].firstIndex { $0 >= coverage - 1e-12 } ?? (cumulative[l].count - 1)) + 1
                return min(max(reach, lows[l]), caps[l])
            }
        }
        let goal = min(total, caps.reduce(0, +))
        var lo = 0.0, hi = 1.0
        for _ in 0..<60 {
            let mid = (lo + hi) / 2
            if counts(mid).reduce(0, +) > goal { hi = mid } else { lo = mid }
        }
        // Below the goal by at most a few entries: top up by importance.
        let base = counts(lo)
        return allocate(importance: importance, total: goal, floors: base, ceilings: caps)
    }
}
