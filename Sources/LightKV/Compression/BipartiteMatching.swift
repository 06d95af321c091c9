import CKernels
import Dispatch

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

    /// The `count` best merges (at most half the items) of the window, leaving out pairs less
    /// alike than `minSimilarity` (cosine of the unit-norm features).
    public static func merges(features: UnsafePointer<Float>, dim: Int, rows: [Int], count: Int,
                              minSimilarity: Float = -.infinity) -> [Merge] {
        let n = rows.count
        let r = min(count, n / 2)
        guard r > 0 else { return [] }
        let aCount = (n + 1) / 2, bCount = n / 2
        var best = [Int](repeating: 0, count: aCount)
        var score = [Float](repeating: -.infinity, count: aCount)
        bestPartners(features: features, dim: dim, rows: rows, best: &best, score: &score)
        let order = (0..<aCount).sorted { score[$0] > score[$1] || (score[$0] == score[$1] && $0 < $1) }
        return order.prefix(r).prefix { score[$0] >= minSimilarity }.map { Merge(from: 2 * $0, into: 2 * best[$0] + 1) }
    }

    /// Whether four A rows a pass can go through the 512-bit kernel (`kvstore_dot4x4_avx512`),
    /// bit for bit what the two-row pass gives, in fewer instructions and no spilled registers.
    static let hasWideKernels = kvstore_has_avx512() == 1

    /// B rows compared at once per pass over the A rows: their features (16 rows of 4096
    /// floats, 256 KB at LLaVA's width: half this machine's 512 KB L2 per core) stay in cache
    /// while every A row is compared with them.
    static let bTile = 16

    /// Each A's most similar B (the first of equals) and its similarity. A whole-frame window
    /// (airmerge, tome) compares every A with every B: B is walked in cache-sized tiles, four
    /// B rows per pass over four A rows where `wide` (`kvstore_dot4x4_avx512`), else over two
    /// (`VectorKernels.dot2x4`), and A rows are split over two cores.
    /// Each similarity is summed in `dot`'s order and B is visited in ascending order for every
    /// A, so the result is exactly that of the plain double loop.
    static func bestPartners(features: UnsafePointer<Float>, dim: Int, rows: [Int], best: inout [Int], score: inout [Float],
                             wide: Bool = hasWideKernels) {
        let aCount = best.count, bCount = rows.count / 2
        // Two parts, as the other kernels split (the cores of ../shared/PLATFORM.md); small windows stay on one.
        let parts = aCount * bCount * dim < 1 << 22 ? 1 : min(2, aCount)
        let f = SharedPointer(features)
        rows.withUnsafeBufferPointer { rowBuffer in
            best.withUnsafeMutableBufferPointer { bestBuffer in
                score.withUnsafeMutableBufferPointer { scoreBuffer in
                    let (r, bestOut, scoreOut) = (SharedPointer(rowBuffer.baseAddress!), SharedPointer(bestBuffer.baseAddress!),
                                                  SharedPointer(scoreBuffer.baseAddress!))
                    DispatchQueue.concurrentPerform(iterations: parts) { part in
                        func row(_ i: Int) -> UnsafePointer<Float> { UnsafePointer(f.base) + r.base[i] * dim }
                        // The wide kernel's row pointers and sums, allocated once per part.
                        let aRows = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: 4)
                        let bRows = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: 4)
                        let sums = UnsafeMutablePointer<Float>.allocate(capacity: 16)
                        defer { aRows.deallocate(); bRows.deallocate(); sums.deallocate() }
                        var tile = 0
                        while tile < bCount {
                            let tileEnd = min(tile + bTile, bCount)
                            let (first, end) = (part * aCount / parts, (part + 1) * aCount / parts)
                            var a = first
                            while wide && a + 4 <= end {
                                // Four A rows a pass against four B rows, in 512-bit registers.
                                for i in 0..<4 { aRows[i] = row(2 * (a + i)) }
                                var top = SIMD4<Float>((0..<4).lazy.map { scoreOut.base[a + $0] })
                                var at = SIMD4<Int>((0..<4).lazy.map { bestOut.base[a + $0] })
                                var b = tile
                                while b + 4 <= tileEnd {
                                    for k in 0..<4 { bRows[k] = row(2 * (b + k) + 1) }
                                    kvstore_dot4x4_avx512(aRows, bRows, dim, sums)
                                    for i in 0..<4 { for k in 0..<4 where sums[4 * i + k] > top[i] { top[i] = sums[4 * i + k]; at[i] = b + k } }
                                    b += 4
                                }
                                while b < tileEnd {
                                    let fb = row(2 * b + 1)
                                    for i in 0..<4 {
                                        let s = VectorKernels.dot(aRows[i]!, fb, dim)
                                        if s > top[i] { top[i] = s; at[i] = b }
                                    }
                                    b += 1
                                }
                                for i in 0..<4 { (scoreOut.base[a + i], bestOut.base[a + i]) = (top[i], at[i]) }
                                a += 4
                            }
                            while a + 2 <= end {
                                // Two A rows a pass: each B chunk is loaded once for both.
                                let (fa0, fa1) = (row(2 * a), row(2 * a + 2))
                                var (top0, at0) = (scoreOut.base[a], bestOut.base[a])
                                var (top1, at1) = (scoreOut.base[a + 1], bestOut.base[a + 1])
                                var b = tile
                                while b + 4 <= tileEnd {
                                    let (s0, s1) = VectorKernels.dot2x4(fa0, fa1, row(2 * b + 1), row(2 * b + 3), row(2 * b + 5), row(2 * b + 7), dim)
                                    for k in 0..<4 where s0[k] > top0 { top0 = s0[k]; at0 = b + k }
                                    for k in 0..<4 where s1[k] > top1 { top1 = s1[k]; at1 = b + k }
                                    b += 4
                                }
                                while b < tileEnd {
                                    let fb = row(2 * b + 1)
                                    let s0 = VectorKernels.dot(fa0, fb, dim), s1 = VectorKernels.dot(fa1, fb, dim)
                                    if s0 > top0 { top0 = s0; at0 = b }
                                    if s1 > top1 { top1 = s1; at1 = b }
                                    b += 1
                                }
                                (scoreOut.base[a], bestOut.base[a]) = (top0, at0)
                                (scoreOut.base[a + 1], bestOut.base[a + 1]) = (top1, at1)
                                a += 2
                            }
                            if a < end {
                                let fa = row(2 * a)
                                var (top, at) = (scoreOut.base[a], bestOut.base[a])
                                var b = tile
                                while b + 4 <= tileEnd {
                                    let s = VectorKernels.dot4(fa, row(2 * b + 1), row(2 * b + 3), row(2 * b + 5), row(2 * b + 7), dim)
                                    for k in 0..<4 where s[k] > top { top = s[k]; at = b + k }
                                    b += 4
                                }
                                while b < tileEnd {
                                    let s = VectorKernels.dot(fa, row(2 * b + 1), dim)
                                    if s > top { top = s; at = b }
                                    b += 1
                                }
                                (scoreOut.base[a], bestOut.base[a]) = (top, at)
                            }
                            tile = tileEnd
                        }
                    }
                }
            }
        }
    }
}
