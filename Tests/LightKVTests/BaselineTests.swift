import XCTest
@testable import LightKV

final class BaselineTests: XCTestCase {
    /// 16×16 image over 32 layers: enough tokens and depth for retention to be measurable.
    func averageRetention(_ token: String) throws -> Double {
        var f = Fixture.image(rows: 16, cols: 16)
        f.kvHeads = 1; f.qHeads = 2; f.headDim = 4; f.vHeadDim = 2; f.layerCount = 32
        var c = try published(token).makeCompressor()
        let layout = VisionLayout(spans: f.spans, seqLen: f.seqLen)
        let kept = f.run(&c).map { pair in Double(pair.1.positions.filter(layout.isVision).count) / 256 }
        return kept.reduce(0, +) / 32
    }

    func testEveryMethodHitsItsTargetRetention() throws {
        for target in [55, 35, 20] {
            for method in ["lightkv", "uniform", "random", "prompt-topk", "tome"] {
                let r = try averageRetention("\(method)\(target)")
                XCTAssertEqual(r, Double(target) / 100, accuracy: 0.03, "\(method)\(target) kept \(r)")
            }
            for method in ["uniform", "random", "prompt-topk"] {
                let r = try averageRetention("\(method)\(target):profile=flat")
                XCTAssertEqual(r, Double(target) / 100, accuracy: 0.01, "\(method)\(target) flat kept \(r)")
            }
        }
    }

    func testReferenceScheduleKeepsAboutFiftyFivePercent() throws {
        XCTAssertEqual(MergeSchedule.reference(.llava, layerCount: 32).stages.map(\.layer), [12, 18, 24])
        XCTAssertEqual(MergeSchedule.reference(.qwen, layerCount: 28).stages.map(\.windowsPerSide), [6, 4, 2])
        XCTAssertEqual(MergeSchedule.reference(.auto, layerCount: 28).stages.map(\.layer), [12, 17, 22])
        XCTAssertEqual(MergeSchedule.reference(.llava, layerCount: 32).nominalAverageRetention, 17.5 / 32, accuracy: 1e-9)
        XCTAssertEqual(try averageRetention("lightkv"), 17.5 / 32, accuracy: 0.02)
    }

    func testRandomIsDeterministicAndSeeded() throws {
        var f1 = Fixture.mixed(), f2 = Fixture.mixed(), f3 = Fixture.mixed()
        var a = try published("random35").makeCompressor(), b = try published("random35").makeCompressor()
        var c = try published("random35:seed=9").makeCompressor()
        let x = f1.run(&a).map(\.1.positions), y = f2.run(&b).map(\.1.positions), z = f3.run(&c).map(\.1.positions)
        XCTAssertEqual(x, y)
        XCTAssertNotEqual(x, z)
    }

    func testPromptTopKKeepsTheMostAttendedTokens() {
        // One head, one query along +x: vision keys with larger x get more attention.
        let spans: [Span] = [.image(0, rows: 2, cols: 2), .text(4, 5, role: .prompt)]
        let keys: [Float] = [0.1, 0, 3, 0, -1, 0, 2, 0, 0, 0]
        let layer = KVLayer(kvHeads: 1, headDim: 2, vHeadDim: 1, keys: keys, values: [0, 1, 2, 3, 4],
                            positions: [0, 1, 2, 3, 4], sizes: [1, 1, 1, 1, 1])
        var b = BaselineSettings(method: .promptTopK, retention: 0.5)
        b.profile = .flat
        var c = SelectionCompressor(settings: b)
        let out = c.compress(layer, context: LayerContext(index: 0, layerCount: 1, spans: spans, seqLen: 5,
                                                          promptQuery: QueryBlock(heads: 1, count: 1, headDim: 2, values: [1, 0])))
        XCTAssertEqual(out.positions, [1, 3, 4])
        XCTAssertEqual(out.values, [1, 3, 4])
    }
}
