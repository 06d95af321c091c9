import XCTest
@testable import LightKV

final class FidelityTests: XCTestCase {
    func testIdenticalOutputsHaveZeroErrorAndCosineOne() {
        var f = Fixture.mixed()
        let l = f.layer(), q = f.queries(3)
        let o = AttentionOutput.compute(queries: q, layer: l, proportional: true)
        let a = OutputAgreement(reference: o, approximate: o, rows: q.heads * q.count, dim: l.vHeadDim)
        XCTAssertEqual(a.relativeError, 0)
        XCTAssertEqual(a.cosine, 1, accuracy: 1e-6)
    }

    func testAgreementOfKnownVectors() {
        // Row 0: orthogonal, error ‖(−1, 1)‖/1 = √2. Row 1: same direction, half length: error 1/2.
        let a = OutputAgreement(reference: [1, 0, 0, 2], approximate: [0, 1, 0, 1], rows: 2, dim: 2)
        XCTAssertEqual(a.cosine, (0 + 1) / 2, accuracy: 1e-9)
        XCTAssertEqual(a.relativeError, (2.0.squareRoot() + 0.5) / 2, accuracy: 1e-6)
    }

    func testAttentionOutputFollowsTheGroupedQueryMapping() {
        // kv head 0 holds value 1, kv head 1 value 5; query heads 0,1 read head 0, heads 2,3 head 1.
        let l = KVLayer(kvHeads: 2, headDim: 1, vHeadDim: 1, keys: [1, 1], values: [1, 5], positions: [0], sizes: [1])
        let q = QueryBlock(heads: 4, count: 1, headDim: 1, values: [1, 1, 1, 1])
        XCTAssertEqual(AttentionOutput.compute(queries: q, layer: l, proportional: false), [1, 1, 5, 5])
    }

    func testExpandedLayerEqualsProportionalAttention() throws {
        var f = Fixture.mixed()
        var c = try published("lightkv@0/2/0.5,1/1/0.5").makeCompressor()
        let merged = c.compress(f.layer(), context: f.context(0, f.queries(2)))
        let merged2 = c.compress(f.layer(), context: f.context(1, f.queries(2)))
        for m in [merged, merged2] {
            XCTAssertGreaterThan(m.sizes.max()!, 2)
            let expanded = try m.expanded()
            XCTAssertEqual(expanded.count, f.seqLen)
            XCTAssertEqual(expanded.positions, (0..<Int32(f.seqLen)).map { $0 })
            XCTAssertTrue(expanded.sizes.allSatisfy { $0 == 1 })
            let q = f.queries(4)
            let a = AttentionOutput.compute(queries: q, layer: m, proportional: true)
            let b = AttentionOutput.compute(queries: q, layer: expanded, proportional: false)
            for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-5) }
        }
    }

    func testOnePassGivesBothOutputsAsSeparatePassesDo() throws {
        var f = Fixture.mixed()
        var c = try published("lightkv@0/1/0.5").makeCompressor()
        let merged = c.compress(f.layer(), context: f.context(0, f.queries(2)))
        let q = f.queries(3)
        let both = AttentionOutput.both(queries: q, layer: merged)
        XCTAssertEqual(both.proportional, AttentionOutput.compute(queries: q, layer: merged, proportional: true))
        XCTAssertEqual(both.plain, AttentionOutput.compute(queries: q, layer: merged, proportional: false))
        XCTAssertNotEqual(both.plain, both.proportional)
    }

    func testEvaluatingNoneIsExactAndLightKVIsNot() throws {
        var f = Fixture.mixed()
        let bytes = f.snapshotBytes(probes: 3)
        try bytes.withUnsafeBytes { raw in
            let s = try Snapshot(bytes: raw)
            let none = try PolicyEvaluation(snapshot: s, policy: Policy(parsing: "none"))
            XCTAssertEqual(none.probes, "probe_query")
            XCTAssertEqual(none.overall.proportional.relativeError, 0)
            XCTAssertEqual(none.overall.visionRetention, 1)
            XCTAssertEqual(none.overall.encodedBytes, none.overall.inputBytes)
            // dense=0: the fixture's random keys would make every span text-dense (docs/design/dense.md).
            let lkv = try PolicyEvaluation(snapshot: s, policy: Policy(parsing: "lightkv@1/2/0.5:dense=0"))
            XCTAssertGreaterThan(lkv.overall.proportional.relativeError, 0)
            XCTAssertLessThan(lkv.overall.visionRetention, 1)
            XCTAssertLessThan(lkv.overall.encodedBytes, lkv.overall.inputBytes)
            XCTAssertEqual(lkv.layers.count, f.layerCount)
        }
    }

    func testWithoutProbesTheLastPromptQueriesAreHeldOut() throws {
        var f = Fixture.mixed()
        f.prompts = 4
        let bytes = f.snapshotBytes(probes: nil)
        try bytes.withUnsafeBytes { raw in
            let e = try PolicyEvaluation(snapshot: try Snapshot(bytes: raw), policy: Policy(parsing: "lightkv"))
            XCTAssertTrue(e.probes.contains("last 2 prompt_query"), e.probes)
        }
    }
}
