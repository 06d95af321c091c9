/// ToMe's bipartite soft matching inside one window.
///
/// Items alternate into A (0th, 2nd, …) and B (1st, 3rd, …) in window order; each A finds the
/// B with the highest cosine similarity (ties: the first such B), and the
/// `r = min(⌊P·n⌋, ⌊n/2⌋)` A items with the highest similarity merge into their partner (ties:
/// the earlier A). Several A may merge into one B.
public enum BipartiteMatching {
    /// A merge of item `from` (an A) into item `into` (a B), as indices into the window's items.
    public struct Merge: Sendable, Equatable {
        public var from: Int
        public var into: Int
    }

    /// Items merged away when `n` items meet ratio `ratio`.
    @inline(__always) public static func mergeCount(_ n: Int, ratio: Double) -> Int {
        min(Int(ratio * Double(n)), n / 2)
    }

    /// The merges for a window whose item `i` has unit-norm feature row `rows[i]` of
    /// `dim` floats in `features`.
    public static func merges(features: UnsafePointer<Float>, dim: Int, rows: [Int], ratio: Double) -> [Merge] {
        merges(features: features, dim: dim, rows: rows, count: mergeCount(rows.count, ratio: ratio))
    }

    /// The `count` best merges (at most half the items) of the window.
    public static func merges(features: UnsafePointer<Float>, dim: Int, rows: [Int], count: Int) -> [Merge] {
        let n = rows.count
        let r = min(count, n / 2)
        guard r > 0 else { return [] }
        let aCount = (n + 1) / 2, bCount = n / 2
        var best = [Int](repeating: 0, count: aCount)
        var score = [Float](repeating: -.infinity, count: aCount)
        for a in 0..<aCount {
            let fa = features + rows[2 * a] * dim
            for b in 0..<bCount {
                let s = VectorKernels.dot(fa, features + rows[2 * b + 1] * dim, dim)
                if s > score[a] { score[a] = s; best[a] = b }
            }
        }
        let order = (0..<aCount).sorted { score[$0] > score[$1] || (score[$0] == score[$1] && $0 < $1) }
        return order.prefix(r).map { Merge(from: 2 * $0, into: 2 * best[$0] + 1) }
    }
}
