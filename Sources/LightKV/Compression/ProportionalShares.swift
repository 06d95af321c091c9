/// Splits a whole number into parts proportional to weights, each under its own cap: the
/// largest-remainder method, with what a capped part cannot take handed to the others.
///
///     ProportionalShares.split(5, weights: [1, 1, 2], caps: [9, 9, 9])   // [1, 1, 3]
public enum ProportionalShares {
    /// Parts summing to `min(total, caps.sum)`; ties go to the earlier index.
    public static func split(_ total: Int, weights: [Double], caps: [Int]) -> [Int] {
        precondition(weights.count == caps.count, "one weight per cap")
        var parts = [Int](repeating: 0, count: caps.count)
        var left = min(total, caps.reduce(0) { $0 + max($1, 0) })
        while left > 0 {
            let open = parts.indices.filter { parts[$0] < caps[$0] }
            let mass = open.reduce(0.0) { $0 + max(weights[$1], 0) }
            var exact: [(index: Int, share: Double)] = open.map {
                ($0, mass > 0 ? Double(left) * max(weights[$0], 0) / mass : Double(left) / Double(open.count))
            }
            var given = 0
            for (k, e) in exact.enumerated() {
                let take = min(Int(e.share), caps[e.index] - parts[e.index])
                parts[e.index] += take
                given += take
                exact[k].share -= Double(take)
            }
            left -= given
            // Remainders: one each, largest first, to parts still open.
            for e in exact.sorted(by: { $0.share > $1.share || ($0.share == $1.share && $0.index < $1.index) }) where left > 0 {
                guard parts[e.index] < caps[e.index] else { continue }
                parts[e.index] += 1
                left -= 1
            }
        }
        return parts
    }
}
