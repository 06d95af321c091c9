import XCTest
@testable import LightKV

/// `lightkv:budget=adaptive`: the schedule's total divided over stages by need.
final class StageBudgetTests: XCTestCase {
    func testPoolingMakesStagesNonIncreasingAndKeepsTheWeightedTotal() {
        // 4 then 10 violates; pooled with weights 1 and 3: (4 + 30) / 4 = 8.5 for both.
        let pooled = StageBudget.nonIncreasing([12, 4, 10], weights: [2, 1, 3])
        XCTAssertEqual(pooled, [12, 8.5, 8.5])
        XCTAssertEqual(zip(pooled, [2.0, 1, 3]).reduce(0) { $0 + $1.0 * $1.1 }, 12 * 2 + 4 + 30)
    }

    func testASkewedLayerNeedsFewerEntriesThanAFlatOne() {
        // Six layers, stages at 2 and 4 keeping 8 and 4 of 16 under the reference (total 24).
        // Layers 2–3 attend to two entries only; layers 4–5 are flat, so they need more.
        let skewed: [Float] = [0.45, 0.45] + Array(repeating: 0.1 / 14, count: 14)
        let flat = [Float](repeating: 1 / 16, count: 16)
        let importance = [flat, flat, skewed, skewed, flat, flat]
        let counts = StageBudget.counts(stageLayers: [2, 4], referenceCounts: [8, 4], layerCount: 6,
                                        importance: importance, floor: 1, ceiling: 16)
        // A flat layer after a skewed one cannot hold more: pooled to the same count, same total.
        XCTAssertEqual(counts, [6, 6])
        XCTAssertEqual(counts[0] * 2 + counts[1] * 2, 8 * 2 + 4 * 2)
    }

    func testStagesFollowNeedWhenNeedFallsWithDepth() {
        let flat = [Float](repeating: 1 / 16, count: 16)
        let skewed: [Float] = [0.9] + Array(repeating: 0.1 / 15, count: 15)
        let counts = StageBudget.counts(stageLayers: [2, 4], referenceCounts: [8, 4], layerCount: 6,
                                        importance: [flat, flat, flat, flat, skewed, skewed], floor: 1, ceiling: 16)
        XCTAssertGreaterThan(counts[0], 8, "the flat stage takes what the skewed one does not need")
        XCTAssertLessThan(counts[1], 4)
        XCTAssertEqual(counts[0] * 2 + counts[1] * 2, 24, accuracy: 2)
    }

    func testTheOptionParsesAndNamesItself() throws {
        let spec = try ReductionSpec(token: "lightkv20:budget=adaptive")
        XCTAssertEqual(spec?.name, "lightkv20:budget=adaptive")
        XCTAssertThrowsError(try ReductionSpec(token: "lightkv@12/4/0.5:budget=adaptive"))
        XCTAssertThrowsError(try ReductionSpec(token: "lightkv:budget=maybe"))
    }
}
