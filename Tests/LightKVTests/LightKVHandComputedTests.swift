import XCTest
@testable import LightKV

/// A 4×4 image in one window, computed by hand: keys are unit-ish 2-D vectors at chosen angles,
/// so the bipartite matching is predictable, and the merged entries are prompt-weighted means.
final class LightKVHandComputedTests: XCTestCase {
    // Grid index i sits at position i+1 (one system token before, two prompt tokens after).
    // B tokens (odd i) point at 0°, 40°, …, 280°; each A token (even i) sits `offset` degrees
    // from the B it should pick: 1°, −2°, 3°, 15°, 4°, 18°, 12°, 19°. With ratio 0.25, r = 4:
    // the A tokens with offsets 1, −2, 3 and 4 (grid 0, 2, 4, 8) merge: 0 and 2 into 1, 4 into
    // 5, 8 into 9.
    let bAngles: [Double] = (0..<8).map { Double($0) * 40 }
    let aTargets = [0, 0, 2, 3, 4, 5, 6, 7]
    let aOffsets: [Double] = [1, -2, 3, 15, 4, 18, 12, 19]
    let spans: [Span] = [.text(0, 1, role: .system), .image(1, rows: 4, cols: 4), .text(17, 19, role: .prompt)]
    let query: [Float] = [0.9, -0.4]

    func key(_ i: Int) -> [Float] {
        let deg = i % 2 == 1 ? bAngles[i / 2] : bAngles[aTargets[i / 2]] + aOffsets[i / 2]
        let magnitude = 1 + Double(i) / 10
        return [Float(cos(deg * .pi / 180) * magnitude), Float(sin(deg * .pi / 180) * magnitude)]
    }

    func input() -> KVLayer {
        var keys: [Float] = [0.3, 0.1], values: [Float] = [-1, 2]          // system token
        for i in 0..<16 { keys += key(i); values += [Float(i), Float(i * i) / 10] }
        keys += [0.5, 0.5, -0.2, 0.7]; values += [7, 7, 8, 8]                // prompt tokens
        return KVLayer(kvHeads: 1, headDim: 2, vHeadDim: 2, keys: keys, values: values,
                       positions: (0..<19).map { $0 }, sizes: [Int32](repeating: 1, count: 19))
    }

    func compress(_ settings: LightKVSettings) -> KVLayer {
        var c = LightKVCompressor(settings: settings)
        let ctx = LayerContext(index: 0, layerCount: 1, spans: spans, seqLen: 19,
                               promptQuery: QueryBlock(heads: 1, count: 1, headDim: 2, values: query))
        return c.compress(input(), context: ctx)
    }

    func settings() -> LightKVSettings {
        var s = LightKVSettings()
        s.stages = [MergeSchedule.Stage(layer: 0, windowsPerSide: 1, ratio: 0.25)]
        return s
    }

    /// e^(q·k/√2): the prompt weight of grid token i up to the softmax's common denominator.
    func weight(_ i: Int) -> Double {
        let k = key(i)
        return exp((Double(query[0]) * Double(k[0]) + Double(query[1]) * Double(k[1])) / 2.0.squareRoot())
    }

    func expectedMean(_ members: [Int], _ f: (Int) -> [Float]) -> [Float] {
        let total = members.reduce(0) { $0 + weight($1) }
        return (0..<2).map { d in Float(members.reduce(0.0) { $0 + weight($1) * Double(f($1)[d]) } / total) }
    }

    func testMergesTheFourMostSimilarATokensIntoTheirBPartners() {
        let out = compress(settings())
        XCTAssertEqual(out.positions, [0, 2, 4, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18])
        XCTAssertEqual(out.sizes, [1, 3, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1])
        XCTAssertEqual(out.memberPositions, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18])
    }

    func testMergedKeysAndValuesArePromptWeightedMeans() {
        let out = compress(settings())
        let groups: [(entry: Int, members: [Int])] = [(1, [0, 1, 2]), (3, [4, 5]), (6, [8, 9])]
        for g in groups {
            let k = expectedMean(g.members, key), v = expectedMean(g.members) { [Float($0), Float($0 * $0) / 10] }
            for d in 0..<2 {
                XCTAssertEqual(out.keys[g.entry * 2 + d], k[d], accuracy: 1e-5, "key of entry \(g.entry)")
                XCTAssertEqual(out.values[g.entry * 2 + d], v[d], accuracy: 1e-5, "value of entry \(g.entry)")
            }
        }
        // Unmerged grid token 3 (position 4, entry 2) and the text come through unchanged.
        XCTAssertEqual(Array(out.keys[4..<6]), key(3))
        XCTAssertEqual(Array(out.keys[0..<2]), [0.3, 0.1])
        XCTAssertEqual(Array(out.values[28..<30]), [8, 8])
    }

    func testRepresentativeKeyRuleKeepsTheBKeyAndAveragesValues() {
        var s = settings()
        s.keyRule = .rep
        let out = compress(s)
        XCTAssertEqual(Array(out.keys[2..<4]), key(1))
        let v = expectedMean([0, 1, 2]) { [Float($0), Float($0 * $0) / 10] }
        XCTAssertEqual(out.values[2], v[0], accuracy: 1e-5)
    }

    func testLayersBeforeTheFirstStageKeepEveryEntry() {
        var s = settings()
        s.stages = [MergeSchedule.Stage(layer: 1, windowsPerSide: 1, ratio: 0.25)]
        XCTAssertEqual(compress(s), input())
    }
}
