import XCTest
@testable import LightKV

/// Properties LightKV must hold on any input.
final class LightKVPropertyTests: XCTestCase {
    func settings(_ token: String) throws -> LightKVSettings {
        guard case .lightkv(let s) = try spec(token) else { throw PolicyError.badPart(part: token, in: token, why: "not lightkv") }
        return s
    }

    func checkInvariants(_ fixture: Fixture, _ pairs: [(KVLayer, KVLayer)], file: StaticString = #filePath, line: UInt = #line) {
        let layout = VisionLayout(spans: fixture.spans, seqLen: fixture.seqLen)
        for (i, (input, out)) in pairs.enumerated() {
            XCTAssertEqual(out.sizes.reduce(0) { $0 + Int($1) }, fixture.seqLen, "layer \(i): sizes sum", file: file, line: line)
            XCTAssertTrue(zip(out.positions, out.positions.dropFirst()).allSatisfy { $0 < $1 }, "layer \(i): positions ascend", file: file, line: line)
            for (o, p) in out.positions.enumerated() where !layout.isVision(p) {
                XCTAssertEqual(out.sizes[o], 1, file: file, line: line)
                for h in 0..<out.kvHeads {
                    XCTAssertEqual(row(out.keys, head: h, entry: o, count: out.count, dim: out.headDim),
                                   row(input.keys, head: h, entry: Int(p), count: input.count, dim: input.headDim), "layer \(i) text key \(p)", file: file, line: line)
                    XCTAssertEqual(row(out.values, head: h, entry: o, count: out.count, dim: out.vHeadDim),
                                   row(input.values, head: h, entry: Int(p), count: input.count, dim: input.vHeadDim), "layer \(i) text value \(p)", file: file, line: line)
                }
            }
            if let m = out.memberPositions { XCTAssertEqual(m.sorted(), (0..<Int32(fixture.seqLen)).map { $0 }, file: file, line: line) }
        }
    }

    func testSizesSumPositionsAscendAndTextIsBitIdenticalForEveryMode() throws {
        for token in ["lightkv", "lightkv:groups=rematch", "lightkv:key=rep:renorm=on", "lightkv20", "lightkv@1/2/0.5,3/1/0.4", "tome35",
                      "lightkv35:near=0.5"] {
            var f = Fixture.mixed()
            var c = try published(token).makeCompressor()
            checkInvariants(f, f.run(&c))
        }
    }

    func testNearMergesNoPairLessAlike() throws {
        // Random keys in 16 dimensions: no pair is 0.99 alike, so nothing merges at any stage,
        // with a standing target (`lightkv35`) or a ratio per window (explicit stages).
        for token in ["lightkv35:near=0.99", "lightkv@1/2/0.5,3/1/0.4:near=0.99"] {
            var f = Fixture.mixed()
            var c = try published(token).makeCompressor()
            let pairs = f.run(&c)
            checkInvariants(f, pairs)
            XCTAssertTrue(pairs.allSatisfy { $0.1.count == f.seqLen }, token)
            XCTAssertEqual(c.record["near"], "0.99")
        }
        XCTAssertEqual(try spec("lightkv35:near=0.95").name, "lightkv35:near=0.95")
        XCTAssertThrowsError(try spec("lightkv:near=1.5"))
    }

    func testEachWindowHonoursItsRatioWithinOneToken() throws {
        // 8×8 image, 2×2 windows of 16, ratio 0.3: every window keeps 16 − ⌊4.8⌋ = 12 entries.
        var f = Fixture.image(rows: 8, cols: 8)
        f.layerCount = 1
        var c = LightKVCompressor(settings: try settings("lightkv@0/2/0.3"))
        let out = f.run(&c)[0].1
        var perWindow = [Int](repeating: 0, count: 4)
        for p in out.positions where (3..<67).contains(p) {
            let cell = Int(p) - 3
            perWindow[(cell / 8 / 4) * 2 + (cell % 8) / 4] += 1
        }
        for n in perWindow { XCTAssertLessThanOrEqual(abs(n - 12), 1, "window kept \(n)") }
    }

    func testGroupsHoldForDeeperLayersWhenReused() throws {
        var f = Fixture.mixed()
        var c = LightKVCompressor(settings: try settings("lightkv@1/2/0.5,3/1/0.5"))
        let out = f.run(&c).map(\.1)
        XCTAssertEqual(out[0].count, f.seqLen)
        XCTAssertEqual(out[1].positions, out[2].positions)
        XCTAssertEqual(out[1].sizes, out[2].sizes)
        XCTAssertLessThan(out[3].count, out[2].count)
        // Every group of layer 3 is a union of layer 2's groups.
        let m2 = Dictionary(uniqueKeysWithValues: zip(out[2].positions, groupsOf(out[2])))
        for g in groupsOf(out[3]) {
            let covered = m2.values.filter { !$0.isDisjoint(with: g) }
            XCTAssertTrue(covered.allSatisfy { $0.isSubset(of: g) })
        }
    }

    func groupsOf(_ l: KVLayer) -> [Set<Int32>] {
        var o = 0
        return l.sizes.map { s in defer { o += Int(s) }; return Set(l.memberPositions![o..<o + Int(s)]) }
    }

    func testPromptGuidedMergeEqualsUnweightedMergeWhenPromptAttentionIsUniform() throws {
        var guided = try settings("lightkv@0/2/0.5,2/1/0.5")
        var plain = guided
        plain.guidance = .none
        for mode in LightKVSettings.Groups.allCases {
            guided.groups = mode; plain.groups = mode
            var f1 = Fixture.mixed(seed: 7), f2 = Fixture.mixed(seed: 7)
            var a = LightKVCompressor(settings: guided), b = LightKVCompressor(settings: plain)
            let zeros = QueryBlock(heads: f1.qHeads, count: 2, headDim: f1.headDim, values: [Float](repeating: 0, count: f1.qHeads * 2 * f1.headDim))
            for i in 0..<f1.layerCount {
                let l1 = f1.layer(), l2 = f2.layer()
                let x = a.compress(l1, context: f1.context(i, zeros)), y = b.compress(l2, context: f2.context(i, nil))
                XCTAssertEqual(x.positions, y.positions)
                XCTAssertEqual(x.sizes, y.sizes)
                for (p, q) in zip(x.keys + x.values, y.keys + y.values) { XCTAssertEqual(p, q, accuracy: 1e-5) }
            }
        }
    }

    func testWithoutWindowsAndGuidanceLightKVIsToMe() throws {
        var f1 = Fixture.mixed(seed: 3), f2 = Fixture.mixed(seed: 3)
        var a = try published("lightkv35:windows=off:guide=none").makeCompressor(), b = try published("tome35").makeCompressor()
        XCTAssertEqual(f1.run(&a).map(\.1), f2.run(&b).map(\.1))
    }

    func testWithoutPromptQueryThePromptKeysGuideAndTheRecordSaysSo() throws {
        var f = Fixture.mixed()
        var c = try published("lightkv").makeCompressor()
        _ = f.run(&c, withQueries: false)
        XCTAssertEqual(c.record["guidance"], PromptAttention.Source.promptKeys.rawValue)
    }

    func testAlreadyMergedInputsKeepTheirMergesAndSizesAccumulate() throws {
        var f = Fixture.mixed()
        var first = try published("lightkv@0/2/0.5").makeCompressor()
        var second = try published("lightkv@0/1/0.5").makeCompressor()
        let q = f.queries(2)
        let once = first.compress(f.layer(), context: f.context(0, q))
        var arrived = once
        arrived.memberPositions = nil                    // as read from a merged kvsnap file
        let twice = second.compress(arrived, context: f.context(0, q))
        XCTAssertEqual(twice.sizes.reduce(0) { $0 + Int($1) }, f.seqLen)
        XCTAssertLessThan(twice.count, once.count)
        XCTAssertGreaterThan(twice.sizes.max()!, once.sizes.max()!)
        XCTAssertNil(twice.memberPositions)
        XCTAssertThrowsError(try twice.expanded())
    }
}

final class VisionLayoutTests: XCTestCase {
    func testUnevenBandsMakeTheFirstBandsOneLonger() {
        XCTAssertEqual((0..<5).map { VisionLayout.band($0, length: 5, parts: 2) }, [0, 0, 0, 1, 1])
        XCTAssertEqual((0..<7).map { VisionLayout.band($0, length: 7, parts: 3) }, [0, 0, 0, 1, 1, 2, 2])
    }

    func testSmallFramesGetFewerWindowsNotNone() {
        XCTAssertEqual(VisionLayout.effectiveWindows(requested: 4, standing: 576, rows: 24, cols: 24), 4)
        XCTAssertEqual(VisionLayout.effectiveWindows(requested: 4, standing: 100, rows: 24, cols: 24), 3)
        XCTAssertEqual(VisionLayout.effectiveWindows(requested: 6, standing: 5, rows: 24, cols: 24), 1)
        XCTAssertEqual(VisionLayout.effectiveWindows(requested: 4, standing: 400, rows: 2, cols: 40), 2)
    }

    func testPositionsMapToFramesRowsAndColumns() {
        let layout = VisionLayout(spans: Fixture.mixed().spans, seqLen: 92)
        XCTAssertFalse(layout.isVision(0))
        XCTAssertEqual(layout.frames.count, 3)
        XCTAssertTrue(layout.cell(2 + 7 + 3) == (1, 3))
        XCTAssertEqual(layout.frameOfPosition[39 + 24], 2)
        XCTAssertTrue(layout.cell(39 + 24 + 7) == (1, 1))
    }
}
