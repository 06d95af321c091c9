import XCTest
@testable import LightKV

final class AirCacheTests: XCTestCase {
    func testBudgetSumsToTotalWithinFloorsAndCeilings() {
        var rng = SeededRandom(5)
        let importance = (0..<7).map { _ in (0..<40).map { _ in Float.random(in: 0...1, using: &rng) } }
        for total in [7, 50, 140, 280] {
            for counts in [LayerBudget.allocate(importance: importance, total: total, floors: [Array(repeating: 1, count: 6), [0]].flatMap { $0 }, ceilings: Array(repeating: 40, count: 7)),
                           LayerBudget.equalCoverage(importance: importance, total: total, floors: Array(repeating: 1, count: 7), ceilings: Array(repeating: 40, count: 7))] {
                XCTAssertEqual(counts.reduce(0, +), total)
                XCTAssertTrue(counts.allSatisfy { (0...40).contains($0) })
            }
        }
        let capped = LayerBudget.allocate(importance: importance, total: 1000, floors: Array(repeating: 2, count: 7), ceilings: Array(repeating: 30, count: 7))
        XCTAssertEqual(capped, Array(repeating: 30, count: 7), "never past a ceiling")
        let floored = LayerBudget.allocate(importance: importance, total: 0, floors: Array(repeating: 3, count: 7), ceilings: Array(repeating: 30, count: 7))
        XCTAssertEqual(floored, Array(repeating: 3, count: 7), "never below a floor")
    }

    func testBudgetHandComputed() {
        // Layer 0 is skewed (one entry holds most), layer 1 flat, layer 2 barely looks at the image.
        let importance: [[Float]] = [[0.60, 0.05, 0.05, 0.05, 0.05],
                                     [0.16, 0.16, 0.16, 0.16, 0.16],
                                     [0.02, 0.01, 0.01, 0.01, 0.01]]
        // Most observed mass: floors 1 each, then 0.16 ×4 from layer 1 beats 0.05 and 0.02.
        XCTAssertEqual(LayerBudget.allocate(importance: importance, total: 7, floors: [1, 1, 1], ceilings: [5, 5, 5]), [1, 5, 1])
        // Equal coverage: layer 0 covers 75% with one entry, layer 1 needs four of five for 80%,
        // layer 2 (normalised 1/3, 1/6 ×4) two for 50%, three for 66.7%, four for 83.3%.
        // Coverage 0.75 asks 1 + 4 + 4 = 9 (> 8); coverage 0.67 asks 1 + 4 + 3 = 8.
        XCTAssertEqual(LayerBudget.equalCoverage(importance: importance, total: 8, floors: [1, 1, 1], ceilings: [5, 5, 5]), [1, 4, 3])
    }

    func testObserversAreTheInstructionTokensTheLastTokenAttendsMost() {
        // 6 instruction tokens, 2 query heads over one kv head, head_dim 2. The last token's
        // query points along +x in both heads; keys of tokens 1 and 3 lie far along +x,
        // token 4 a little, the others along -x.
        let keys: [Float] = [-3, 0, 4, 0, -3, 1, 5, 0, 1, 0, 0, 1]
        var q = [Float](repeating: 0, count: 2 * 6 * 2)
        for h in 0..<2 {
            for t in 0..<6 { q[(h * 6 + t) * 2 + 1] = 1 }   // every other token looks along +y
            q[(h * 6 + 5) * 2] = 4; q[(h * 6 + 5) * 2 + 1] = 0
        }
        let queries = QueryBlock(heads: 2, count: 6, headDim: 2, values: q)
        XCTAssertEqual(ObservationWindow.observers(queries: queries, ownKeys: keys, kvHeads: 1, count: 3), [1, 3, 5])
        XCTAssertEqual(ObservationWindow.observers(queries: queries, ownKeys: keys, kvHeads: 1, count: 4), [1, 3, 4, 5])
        XCTAssertEqual(ObservationWindow.observers(queries: queries, ownKeys: keys, kvHeads: 1, count: 1), [5])
        XCTAssertEqual(ObservationWindow.observers(queries: queries, ownKeys: keys, kvHeads: 1, count: 9), [0, 1, 2, 3, 4, 5])
    }

    func testDisagreeingPerspectiveCountsLess() {
        // Two vision entries and one text entry; head 0 and 1 look at entry 0, head 2 at entry 1.
        let layer = KVLayer(kvHeads: 3, headDim: 1, vHeadDim: 1,
                            keys: [1, -1, 0, 1, -1, 0, -1, 1, 0], values: [0, 0, 0, 0, 0, 0, 0, 0, 0],
                            positions: [0, 1, 2], sizes: [1, 1, 1])
        let q = QueryBlock(heads: 3, count: 1, headDim: 1, values: [4, 4, 4])
        let agreed = ObservationWindow.importance(queries: q, observers: [0], layer: layer, entries: [0, 1])
        let plain = ObservationWindow.importance(queries: q, observers: [0], layer: layer, entries: [0, 1], agreement: false)
        XCTAssertGreaterThan(agreed[0] / agreed[1], plain[0] / plain[1])
        XCTAssertGreaterThan(plain[0], plain[1])
    }

    func testAirCacheKeepsTheMostObservedAndTextExactly() throws {
        var f = Fixture.image(rows: 6, cols: 6)
        f.layerCount = 4
        var c = try published("aircache25").makeCompressor()
        let layout = VisionLayout(spans: f.spans, seqLen: f.seqLen)
        for (input, output) in f.run(&c) {
            let text = input.positions.indices.filter { !layout.isVision(input.positions[$0]) }
            XCTAssertEqual(output.selecting(output.positions.indices.filter { !layout.isVision(output.positions[$0]) }).keys,
                           input.selecting(text).keys)
            XCTAssertTrue(output.sizes.allSatisfy { $0 == 1 }, "eviction never merges")
        }
        var m = try published("airmerge25").makeCompressor()
        var g = Fixture.image(rows: 6, cols: 6)
        g.layerCount = 4
        let merged = g.run(&m).map(\.1)
        XCTAssertTrue(merged.contains { $0.sizes.contains { $0 > 1 } }, "airmerge merges")
        for out in merged {
            XCTAssertLessThanOrEqual(out.sizes.reduce(0) { $0 + Int($1) }, g.seqLen)
        }
    }

    func testNearMergesOnlyNearDuplicates() throws {
        func visionKept(_ out: KVLayer, _ layout: VisionLayout) -> Int { out.positions.filter { layout.isVision($0) }.count }
        // Random keys: no two are 0.99 alike, so nothing merges and a layer keeps more than its
        // budget (all but what its observers ignore); plain airmerge merges down to the budget.
        var f = Fixture.image(rows: 6, cols: 6), plainFixture = Fixture.image(rows: 6, cols: 6)
        (f.layerCount, plainFixture.layerCount) = (3, 3)
        let layout = VisionLayout(spans: f.spans, seqLen: f.seqLen)
        var near = try published("airmerge25:near=0.99").makeCompressor(), plain = try published("airmerge25").makeCompressor()
        for ((_, out), (_, base)) in zip(f.run(&near), plainFixture.run(&plain)) {
            XCTAssertTrue(out.sizes.allSatisfy { $0 == 1 }, "no pair is a near-duplicate")
            XCTAssertGreaterThan(visionKept(out, layout), visionKept(base, layout))
        }
        let nominal = try XCTUnwrap(near.record["nominal_retention"].flatMap(Double.init))
        let kept = try XCTUnwrap(near.record["vision_retention"].flatMap(Double.init))
        XCTAssertGreaterThan(kept, nominal, "the record says what near kept")
        XCTAssertEqual(near.record["near"], "0.99")

        // Vision entries in pairs of equal keys: the pairs merge, and a merged entry's key is the pair's.
        var g = Fixture.image(rows: 6, cols: 6)
        g.layerCount = 3
        var c = try published("airmerge25:near=0.99").makeCompressor()
        let inputs = (0..<g.layerCount).map { _ -> (KVLayer, QueryBlock) in
            var l = g.layer()
            for h in 0..<l.kvHeads {
                for j in stride(from: 3, to: 39, by: 2) {
                    for d in 0..<l.headDim { l.keys[(h * l.count + j + 1) * l.headDim + d] = l.keys[(h * l.count + j) * l.headDim + d] }
                }
            }
            return (l, g.queries(g.prompts))
        }
        for (i, (l, q)) in inputs.enumerated() { c.survey(l, context: g.context(i, q)) }
        for (i, (l, q)) in inputs.enumerated() {
            let out = c.compress(l, context: g.context(i, q))
            XCTAssertTrue(out.sizes.contains { $0 > 1 }, "near-duplicates merge (layer \(i))")
            XCTAssertTrue(out.sizes.allSatisfy { $0 <= 2 }, "only the equal pairs are that alike (layer \(i))")
        }

        // Eviction with near drops an entry only when its twin stays: of each equal pair at
        // least one is kept, and random keys are all kept.
        var e = try published("aircache25:near=0.99").makeCompressor()
        for (i, (l, q)) in inputs.enumerated() { e.survey(l, context: g.context(i, q)) }
        for (i, (l, q)) in inputs.enumerated() {
            let kept = Set(e.compress(l, context: g.context(i, q)).positions)
            for j in stride(from: 3, to: 39, by: 2) {
                XCTAssertTrue(kept.contains(Int32(j)) || kept.contains(Int32(j + 1)), "layer \(i): pair \(j) kept")
            }
            XCTAssertLessThan(kept.count, g.seqLen, "layer \(i): twins go")
        }
        var r = Fixture.image(rows: 6, cols: 6)
        r.layerCount = 2
        var evicting = try published("aircache25:near=0.99").makeCompressor()
        for (_, out) in r.run(&evicting) { XCTAssertEqual(out.count, r.seqLen, "nothing stands for a distinct entry") }
    }

    /// `budget=redundancy` takes what must go from the layers whose entries have near-duplicate
    /// neighbours first: a layer of equal keys gives all it can (down to its floor), a layer of
    /// distinct keys only the rest.
    func testRedundancyBudgetReducesTheLayerWhoseNeighboursAreAlike() throws {
        var g = Fixture.image(rows: 6, cols: 6)
        g.layerCount = 2
        let layout = VisionLayout(spans: g.spans, seqLen: g.seqLen)
        let inputs = (0..<g.layerCount).map { i -> (KVLayer, QueryBlock) in
            var l = g.layer()
            if i == 1 {
                let first = l.positions.firstIndex { layout.isVision($0) }!
                for h in 0..<l.kvHeads {
                    for j in l.positions.indices where layout.isVision(l.positions[j]) {
                        for d in 0..<l.headDim { l.keys[(h * l.count + j) * l.headDim + d] = l.keys[(h * l.count + first) * l.headDim + d] }
                    }
                }
            }
            return (l, g.queries(g.prompts))
        }
        XCTAssertEqual(NearDuplicates.flags(inputs[1].0, vision: inputs[1].0.positions.indices.filter { layout.isVision(inputs[1].0.positions[$0]) },
                                            layout: layout, threshold: 0.95).filter { $0 }.count, 36)
        XCTAssertEqual(NearDuplicates.flags(inputs[0].0, vision: inputs[0].0.positions.indices.filter { layout.isVision(inputs[0].0.positions[$0]) },
                                            layout: layout, threshold: 0.95).filter { $0 }.count, 0, "random keys have no near-duplicate")
        var c = try published("airmerge25:budget=redundancy").makeCompressor()
        for (i, (l, q)) in inputs.enumerated() { c.survey(l, context: g.context(i, q)) }
        for (i, (l, q)) in inputs.enumerated() { _ = c.compress(l, context: g.context(i, q)) }
        // 72 vision entries, 18 kept: 54 go. The equal layer gives 34 (36 down to its floor of
        // 2), the distinct one the other 20.
        XCTAssertEqual(c.record["layer_budgets"], "16,2")
        XCTAssertEqual(c.record["budget"], "redundancy")
    }

    /// `distinct=on` protects the most observed entry of each cluster of near-duplicates, not
    /// every copy: a video's salient object, seen in every frame, is kept exact once.
    func testDistinctProtectionSkipsNearDuplicatesOfAProtectedEntry() throws {
        var g = Fixture.image(rows: 4, cols: 4)
        var l = g.layer()
        let vision = Array(3..<19)
        // Entries 3 and 4 alike (4 a scaled copy: cosine 1), 5 distinct.
        for h in 0..<l.kvHeads {
            for d in 0..<l.headDim { l.keys[(h * l.count + 4) * l.headDim + d] = 2 * l.keys[(h * l.count + 3) * l.headDim + d] }
        }
        let candidates = [0, 1, 2, 3][...]
        XCTAssertEqual(AirCacheCompressor.distinctLeaders(candidates, count: 2, vision: vision, layer: l, near: 0.95), [0, 2])
        XCTAssertEqual(AirCacheCompressor.distinctLeaders(candidates, count: 4, vision: vision, layer: l, near: 0.95), [0, 2, 3, 1],
                       "too few distinct: the most observed of the rest fill the count")

        // In a whole reduction: the same budget as without, and the record says so.
        var on = try published("airmerge25:protect=0.5:distinct=on").makeCompressor()
        var off = try published("airmerge25:protect=0.5").makeCompressor()
        var f = Fixture.image(rows: 6, cols: 6), f2 = Fixture.image(rows: 6, cols: 6)
        (f.layerCount, f2.layerCount) = (3, 3)
        for ((_, a), (_, b)) in zip(f.run(&on), f2.run(&off)) { XCTAssertEqual(a.count, b.count) }
        XCTAssertEqual(on.record["protect"], "0.5 (distinct)")
        XCTAssertEqual(off.record["protect"], "0.5")
    }

    func testPolicyNamesRoundTrip() throws {
        for token in ["aircache10", "aircache5:observers=2", "airmerge20:protect=0.5:evict=0.1", "airmerge10:evict=0", "aircache10:budget=flat",
                      "airmerge35:near=0.9", "aircache35:near=0.95", "airmerge35:budget=redundancy:evict=0",
                      "airmerge35:budget=redundancy:protect=0.5:distinct=on",
                      "prompt-topk20:profile=adaptive", "aircache10:agreement=off:floor=0.5"] {
            XCTAssertEqual(try spec(token).name, token)
        }
        XCTAssertThrowsError(try spec("aircache10:protect=0.5"))
        XCTAssertThrowsError(try spec("aircache10:distinct=on"), "eviction protects nothing")
        XCTAssertThrowsError(try spec("airmerge10:distinct=yes"))
        XCTAssertThrowsError(try spec("airmerge10:near=2"))
        XCTAssertThrowsError(try spec("aircache10@qwen"))
        XCTAssertThrowsError(try spec("uniform10:profile=adaptive"))
    }
}
