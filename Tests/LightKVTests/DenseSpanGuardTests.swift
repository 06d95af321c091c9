import XCTest
@testable import LightKV

/// The dense-span guard (docs/design/dense.md): a vision span whose entries differ from their
/// neighbours is kept whole by every reduction; a redundant one is reduced as before.
final class DenseSpanGuardTests: XCTestCase {
    /// System text, a 6×6 image of near-equal keys (a photo's sky), text, a 6×6 image of random
    /// keys (a page of words), prompt text.
    private func twoImages() -> (Fixture, [(KVLayer, QueryBlock)]) {
        let spans: [Span] = [.text(0, 3, role: .system), .image(3, rows: 6, cols: 6), .text(39, 41),
                             .image(41, rows: 6, cols: 6), .text(77, 82, role: .prompt)]
        var g = Fixture(spans: spans, seqLen: 82, rng: SeededRandom(3))
        g.layerCount = 4
        let inputs = (0..<g.layerCount).map { _ -> (KVLayer, QueryBlock) in
            var l = g.layer()
            for h in 0..<l.kvHeads {
                for j in 4..<39 {   // every entry of the first image but its first: near its neighbour
                    for d in 0..<l.headDim {
                        l.keys[(h * l.count + j) * l.headDim + d] = l.keys[(h * l.count + 3) * l.headDim + d] * (1 + 0.001 * Float(j % 5))
                    }
                }
            }
            return (l, g.queries(g.prompts))
        }
        return (g, inputs)
    }

    private func run(_ policy: String, _ g: Fixture, _ inputs: [(KVLayer, QueryBlock)]) throws -> ([KVLayer], [String: String]) {
        var c = try spec(policy).makeCompressor()
        for _ in 0..<c.surveyPasses {
            for (i, (l, q)) in inputs.enumerated() { c.survey(l, context: g.context(i, q)) }
        }
        let out = inputs.enumerated().map { i, pair in c.compress(pair.0, context: g.context(i, pair.1)) }
        return (out, c.record)
    }

    func testEveryReductionKeepsATextDenseSpanWholeAndReducesARedundantOne() throws {
        let (g, inputs) = twoImages()
        let page = Set(Int32(41)..<77), photo = Set(Int32(3)..<39)
        for policy in ["lightkv35", "aircache35", "airmerge35", "airmerge35:budget=redundancy", "tome35", "uniform35",
                       "random35", "prompt-topk35", "airmerge35:evict=0:guide=none"] {
            let (out, record) = try run(policy, g, inputs)
            XCTAssertEqual(record["dense_spans"], "3", policy)
            XCTAssertEqual(record["span_redundancy"], "1:1.00,3:0.00", policy)
            XCTAssertEqual(record["dense"], "0.6", policy)
            var reduced = false
            for (i, (input, output)) in zip(inputs.map(\.0), out).enumerated() {
                // The page: every entry, bit for bit, of size 1.
                let kept = output.positions.indices.filter { page.contains(output.positions[$0]) }
                XCTAssertEqual(kept.map { output.positions[$0] }, Array(Int32(41)..<77), "\(policy) layer \(i)")
                for j in kept {
                    let k = Int(output.positions[j])
                    XCTAssertEqual(output.sizes[j], 1)
                    for h in 0..<input.kvHeads {
                        XCTAssertEqual(row(output.keys, head: h, entry: j, count: output.count, dim: output.headDim),
                                       row(input.keys, head: h, entry: k, count: input.count, dim: input.headDim), "\(policy) layer \(i)")
                        XCTAssertEqual(row(output.values, head: h, entry: j, count: output.count, dim: output.vHeadDim),
                                       row(input.values, head: h, entry: k, count: input.count, dim: input.vHeadDim), "\(policy) layer \(i)")
                    }
                }
                if output.positions.filter({ photo.contains($0) }).count < 36 { reduced = true }
            }
            XCTAssertTrue(reduced, "\(policy): the redundant image is reduced")
            let retention = try XCTUnwrap(record["vision_retention"].flatMap(Double.init), policy)
            XCTAssertGreaterThan(retention, 0.5, "\(policy): the page counts as kept")
            XCTAssertLessThan(retention, 1, policy)
        }
    }

    func testDenseZeroReducesEverySpanAsPublished() throws {
        let (g, inputs) = twoImages()
        for policy in ["lightkv35:dense=0", "aircache35:dense=0", "tome35:dense=0"] {
            let (out, record) = try run(policy, g, inputs)
            XCTAssertNil(record["dense_spans"], policy)
            let pageKept = out.map { $0.positions.filter { (41..<77).contains($0) }.count }
            XCTAssertLessThan(pageKept.min()!, 36, "\(policy): the page is reduced too")
        }
    }

    func testWhereEverySpanIsTextDenseTheReductionDoesNotRun() throws {
        var g = Fixture.mixed()   // an image and a two-frame video, every key random
        let inputs = (0..<g.layerCount).map { _ in (g.layer(), g.queries(g.prompts)) }
        for policy in ["airmerge35", "lightkv35", "random35"] {
            let (out, record) = try run(policy, g, inputs)
            XCTAssertEqual(record["dense_spans"], "1,3", policy)
            XCTAssertEqual(record["vision_retention"], "1.0000", policy)
            for (input, output) in zip(inputs.map(\.0), out) { XCTAssertEqual(output, input, policy) }
        }
    }

    func testDenseIsSpelledWhenNotTheDefaultAndRefusedOutsideZeroToOne() throws {
        for token in ["lightkv:dense=0", "airmerge35:dense=0.4", "tome55:dense=0", "random35:seed=7:dense=0.8"] {
            XCTAssertEqual(try spec(token).name, token)
        }
        XCTAssertEqual(try spec("aircache35:dense=0.6").name, "aircache35")
        XCTAssertEqual(try spec("lightkv").denseShare, DenseSpanGuard.defaultShare)
        for bad in ["lightkv:dense=1.5", "aircache35:dense=-0.1", "tome55:dense=x"] {
            XCTAssertThrowsError(try spec(bad), bad) { error in
                XCTAssertTrue("\(error)".contains("dense="), "\(bad): \(error)")
            }
        }
        XCTAssertNil(ReductionSpec.none.denseShare)
    }
}
