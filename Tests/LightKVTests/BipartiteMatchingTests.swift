import CKernels
import XCTest
@testable import LightKV

/// The tiled, two-core best-partner search gives exactly the plain double loop's matches.
final class BipartiteMatchingTests: XCTestCase {
    /// The definition: every A against every B in order, `dot` for each, the first best kept.
    private func plainBest(_ f: [Float], dim: Int, rows: [Int]) -> (best: [Int], score: [Float]) {
        let aCount = (rows.count + 1) / 2, bCount = rows.count / 2
        var best = [Int](repeating: 0, count: aCount), score = [Float](repeating: -.infinity, count: aCount)
        f.withUnsafeBufferPointer { fb in
            for a in 0..<aCount {
                for b in 0..<bCount {
                    let s = VectorKernels.dot(fb.baseAddress! + rows[2 * a] * dim, fb.baseAddress! + rows[2 * b + 1] * dim, dim)
                    if s > score[a] { score[a] = s; best[a] = b }
                }
            }
        }
        return (best, score)
    }

    func testTiledTwoCoreSearchEqualsThePlainLoopBitForBit() {
        var random = SynthRandom(seed: 11)
        // Sizes on both sides of the one-core threshold, tails after the 4-wide and 16-wide steps,
        // and repeated rows (ties: the first B must win).
        for (n, dim) in [(9, 20), (151, 4096), (300, 264), (67, 2051)] {
            var f = (0..<(n * dim)).map { _ in Float.random(in: -1...1, using: &random) }
            for r in stride(from: 5, to: n, by: 7) { for d in 0..<dim { f[r * dim + d] = f[(r - 4) * dim + d] } }
            let rows = Array((0..<n).reversed())
            let want = plainBest(f, dim: dim, rows: rows)
            // The two-row pass everywhere, the four-row 512-bit pass where the CPU has it.
            for wide in [false] + (BipartiteMatching.hasWideKernels ? [true] : []) {
                var best = [Int](repeating: 0, count: (n + 1) / 2), score = [Float](repeating: -.infinity, count: (n + 1) / 2)
                f.withUnsafeBufferPointer {
                    BipartiteMatching.bestPartners(features: $0.baseAddress!, dim: dim, rows: rows, best: &best, score: &score, wide: wide)
                }
                XCTAssertEqual(best, want.best, "n \(n) dim \(dim) wide \(wide)")
                XCTAssertEqual(score.map(\.bitPattern), want.score.map(\.bitPattern), "n \(n) dim \(dim) wide \(wide)")
            }
        }
    }

    /// The 512-bit kernel's sixteen sums are `dot`'s, bit for bit, for every length: the
    /// 16-wide steps, a last 8, and the tail one product at a time.
    func testTheWideKernelSumsInDotsOrder() throws {
        guard BipartiteMatching.hasWideKernels else { throw XCTSkip("this CPU has no AVX-512F; the two-row pass is used") }
        var random = SynthRandom(seed: 12)
        for n in Array(1...40) + [263, 264, 4096] {
            // Magnitudes far apart, so that any other order of the sums rounds differently.
            // Eight rows of n floats, one after another: four A rows, then four B rows.
            let flat = (0..<(8 * n)).map { _ in Float.random(in: -1...1, using: &random) * Float(1 << Int.random(in: 0...20, using: &random)) }
            var sums = [Float](repeating: 0, count: 16)
            flat.withUnsafeBufferPointer { f in
                let rows = (0..<8).map { Optional(f.baseAddress! + $0 * n) }
                let (a, b) = (Array(rows[0..<4]), Array(rows[4..<8]))
                kvstore_dot4x4_avx512(a, b, n, &sums)
                for i in 0..<4 { for j in 0..<4 {
                    let want = VectorKernels.dot(a[i]!, b[j]!, n)
                    XCTAssertEqual(sums[4 * i + j].bitPattern, want.bitPattern, "n \(n) a \(i) b \(j)")
                } }
            }
        }
    }
}
