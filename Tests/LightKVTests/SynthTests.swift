import XCTest
@testable import LightKV

final class SynthTests: XCTestCase {
    private func tiny(_ edit: (inout SynthSpec) -> Void = { _ in }) throws -> SnapshotSynthesizer {
        var spec = try SynthSpec.preset(named: "tiny")
        edit(&spec)
        return try SnapshotSynthesizer(spec: spec)
    }

    private func withSnapshot<T>(_ bytes: [UInt8], _ body: (Snapshot) throws -> T) throws -> T {
        try bytes.withUnsafeBytes { raw in try body(try Snapshot(bytes: raw)) }
    }

    func testTinyPresetRoundTripsThroughSnapshotValidation() throws {
        let synth = try tiny()
        let bytes = synth.bytes()
        XCTAssertEqual(bytes.count, synth.fileSize)
        try withSnapshot(bytes) { s in
            XCTAssertEqual(s.layerCount, 3)
            XCTAssertEqual(s.kvHeads, 2)
            XCTAssertEqual(s.qHeads, 4)
            XCTAssertEqual(s.headDim, 16)
            XCTAssertEqual(s.dtype, .f16)
            XCTAssertEqual(s.seqLen, 4 + 64 + 8)
            XCTAssertEqual(s.metadata.model, "synth/tiny")
            XCTAssertEqual(s.metadata.key, "synth-tiny-0")
            XCTAssertEqual(s.layers[0].promptQuery?.shape, [4, 4, 16])
            XCTAssertEqual(s.layers[2].probeQuery?.shape, [4, 6, 16])
            XCTAssertEqual(s.metadata.spans.map(\.role), [.system, nil, .prompt])
        }
    }

    func testEveryDTypeRoundTrips() throws {
        for dtype in [DType.bf16, .f32] {
            let bytes = try tiny { $0.dtype = dtype }.bytes()
            try withSnapshot(bytes) { XCTAssertEqual($0.dtype, dtype) }
        }
    }

    func testSameSeedGivesIdenticalBytesAndAnotherSeedDifferentBytes() throws {
        let a = try tiny { $0.seed = 5 }.bytes()
        XCTAssertEqual(a, try tiny { $0.seed = 5 }.bytes())
        XCTAssertNotEqual(a, try tiny { $0.seed = 6 }.bytes())
    }

    func testStreamedChunksEqualBytes() throws {
        let synth = try tiny { $0.frames = 2 }
        var streamed: [UInt8] = []
        var chunks = 0
        synth.write { streamed.append(contentsOf: $0); chunks += 1 }
        XCTAssertEqual(streamed, synth.bytes())
        XCTAssertEqual(chunks, 1 + 3 * 4 + 1, "header, then key, value, prompt_query, probe_query per layer, then input_ids")
    }

    func testSpansTileTheSequenceAndVisionSpansHoldRowsTimesColsTimesFrames() throws {
        let synth = try tiny { $0.gridRows = 3; $0.gridCols = 5; $0.frames = 4; $0.images = 2 }
        let spans = synth.spans
        XCTAssertNoThrow(try spans.validate(seqLen: synth.spec.seqLen))
        let vision = spans.filter(\.isVision)
        XCTAssertEqual(vision.count, 2)
        for span in vision {
            XCTAssertEqual(span.kind, .video)
            XCTAssertEqual(span.count, 3 * 5 * 4)
            XCTAssertEqual(span.frames, 4)
        }
        XCTAssertEqual(spans.first?.role, .system)
        XCTAssertEqual(spans.last?.role, .prompt)
        XCTAssertNotEqual(vision[0].source, vision[1].source, "two different images")
    }

    func testImageSourceIsSha256ShapedAndFollowsTheImageSeed() throws {
        let a = try tiny { $0.seed = 1 }, b = try tiny { $0.seed = 2 }
        let shared = try tiny { $0.seed = 2; $0.imageSeed = 1 }
        let source = a.spans[1].source ?? ""
        XCTAssertTrue(source.hasPrefix("sha256:"))
        XCTAssertEqual(source.count, 7 + 64)
        XCTAssertTrue(source.dropFirst(7).allSatisfy(\.isHexDigit))
        XCTAssertNotEqual(source, b.spans[1].source)
        XCTAssertEqual(source, shared.spans[1].source)
    }

    func testRepeatedImageGivesIdenticalPrefixKeys() throws {
        let a = try tiny { $0.seed = 1 }.layer(2), b = try tiny { $0.seed = 2; $0.imageSeed = 1 }.layer(2)
        let prefix = (4 + 64) * 16  // system + image tokens of kv head 0
        XCTAssertEqual(Array(a.keys[0..<prefix]), Array(b.keys[0..<prefix]))
        XCTAssertNotEqual(a.keys, b.keys, "the prompts differ")
    }

    func testNeighbouringImageKeysAreMoreSimilarThanRandomPairs() throws {
        let synth = try tiny { $0.gridRows = 12; $0.gridCols = 12 }
        try withSnapshot(synth.bytes()) { s in
            for layer in 0..<s.layerCount {
                let stats = SynthStatistics(snapshot: s, layer: layer, focus: synth.focusPositions)
                XCTAssertGreaterThan(stats.neighbourKeyCosine, stats.randomKeyCosine + 0.02, "\(stats)")
                XCTAssertGreaterThan(stats.neighbourValueCosine, stats.randomValueCosine + 0.05, "\(stats)")
            }
        }
    }

    func testDeeperLayersMakeNeighboursMoreAlike() throws {
        let synth = try tiny { $0.gridRows = 12; $0.gridCols = 12; $0.layers = 4 }
        let first = synth.latentFeatures(layer: 0), last = synth.latentFeatures(layer: 3)
        func neighbourDistance(_ x: [Float]) -> Float {
            let dim = SynthModel.latentDim, start = synth.imageStarts[0]
            var s: Float = 0
            for t in start..<(start + 143) { for d in 0..<dim { s += abs(x[t * dim + d] - x[(t + 1) * dim + d]) } }
            return s
        }
        XCTAssertLessThan(neighbourDistance(last), 0.7 * neighbourDistance(first))
    }

    func testPromptAttentionConcentratesOnTheFocusObject() throws {
        let synth = try tiny()
        try withSnapshot(synth.bytes()) { s in
            let stats = SynthStatistics(snapshot: s, layer: 2, focus: synth.focusPositions)
            XCTAssertFalse(synth.focusPositions.isEmpty)
            XCTAssertGreaterThan(stats.focusMass, 2.5 * stats.focusShare, "\(stats)")
            XCTAssertLessThan(stats.topDecileMass, 0.98, "peaked but not one-hot: \(stats)")
            XCTAssertGreaterThan(stats.sinkMass, 0.2, "the first token is an attention sink: \(stats)")
        }
    }

    func testKeysHaveOutlierChannelsAndValuesDoNot() throws {
        let synth = try tiny()
        try withSnapshot(synth.bytes()) { s in
            let stats = SynthStatistics(snapshot: s, layer: 1, focus: synth.focusPositions)
            XCTAssertGreaterThan(stats.keyOutlierRatio, 3, "\(stats)")
            XCTAssertLessThan(stats.valueOutlierRatio, 2.5, "\(stats)")
            XCTAssertLessThan(stats.sinkValueNormRatio, 0.3, "\(stats)")
        }
    }

    func testNoiseIsCentredWithTheRequestedSpreadAndSeedsAgree() {
        var rng = SynthRandom(mixing: 1, 2, 3)
        var variadic = SynthRandom(seed: SynthRandom.mix([1, 2, 3]))
        XCTAssertEqual(rng.next(), variadic.next())
        var buffer = [Float](repeating: 0, count: 100_003)
        buffer.withUnsafeMutableBufferPointer { rng.addNormal($0.baseAddress!, count: $0.count, scale: 2) }
        let mean = buffer.reduce(0, +) / Float(buffer.count)
        let variance = buffer.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(buffer.count)
        XCTAssertEqual(mean, 0, accuracy: 0.03)
        XCTAssertEqual(variance, 4, accuracy: 0.1)
        XCTAssertLessThan(buffer.map(abs).max()!, 2 * 3.47)
    }

    func testPresetsHaveTheirDocumentedShapes() throws {
        let llava = try SnapshotSynthesizer(spec: try SynthSpec.preset(named: "llava"))
        XCTAssertEqual(llava.spec.seqLen, 35 + 576 + 25)
        XCTAssertEqual(Double(llava.fileSize) / 1e6, 340, accuracy: 10)
        let video = try SynthSpec.preset(named: "video")
        XCTAssertEqual(video.tokensPerImage, 18 * 26 * 8)
        XCTAssertEqual(try SynthSpec.preset(named: "qwen").qHeads, 28)
    }

    func testBadValuesNameTheField() throws {
        XCTAssertThrowsError(try SynthSpec.preset(named: "gpt")) { XCTAssertEqual($0 as? SynthError, .unknownPreset("gpt")) }
        var spec = try SynthSpec.preset(named: "tiny")
        spec.qHeads = 3
        XCTAssertThrowsError(try SnapshotSynthesizer(spec: spec)) { error in
            guard case .badField(let field, let value, _)? = error as? SynthError else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "qHeads"); XCTAssertEqual(value, "3")
        }
    }
}
