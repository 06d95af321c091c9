import XCTest
@testable import LightKV

final class KVSnapTests: XCTestCase {
    private func parse(_ bytes: [UInt8]) throws -> Snapshot {
        try bytes.withUnsafeBytes { b in
            // Copy so the snapshot's view outlives the closure in these small tests.
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: b.count, alignment: 8)
            copy.copyMemory(from: b)
            return try Snapshot(bytes: UnsafeRawBufferPointer(copy))
        }
    }

    private func assertRejects(_ bytes: [UInt8], mentioning phrase: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try parse(bytes), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(phrase), "\"\(error)\" does not mention \"\(phrase)\"", file: file, line: line)
        }
    }

    /// Rewrites the JSON header of a file (keeping the data) so tests can break one field.
    private func withHeader(_ bytes: [UInt8], _ edit: (String) -> String) -> [UInt8] {
        let n = Int(bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let json = edit(String(decoding: bytes[8..<(8 + n)], as: UTF8.self))
        var header = Array(json.utf8)
        while header.count < n { header.append(0x20) }
        var out = [UInt8](repeating: 0, count: 8)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.replaceSubrange(0..<8, with: $0) }
        return out + header + bytes[(8 + n)...]
    }

    func testEveryDtypeRoundTripsBitExact() throws {
        for dtype in [DType.f16, .bf16, .f32] {
            let values = Fixtures.values(2 * 26 * 16, seed: 0)
            let s = try parse(Fixtures.snapshotBytes(dtype: dtype))
            XCTAssertEqual(s.dtype, dtype)
            XCTAssertEqual(s.layerCount, 3)
            XCTAssertEqual(s.seqLen, 26)
            let expected = Conversion.bytes(values, dtype: dtype)
            XCTAssertEqual(Array(s.data(s.layers[0].key)), expected, "\(dtype)")
            XCTAssertEqual(s.floatLayer(0).keys, values, "\(dtype) values survive the round trip")
            XCTAssertEqual(s.qHeads, 4)
        }
    }

    func testMetadataAndSpansAreRead() throws {
        let s = try parse(Fixtures.snapshotBytes())
        XCTAssertEqual(s.metadata.model, "test/model")
        XCTAssertEqual(s.metadata.key, "fixture")
        XCTAssertEqual(s.metadata.spans, Fixtures.spans)
        XCTAssertEqual(s.metadata.spans.promptRange, 20..<26)
        XCTAssertEqual(s.positions(layer: 1), (0..<26).map { Int32($0) })
        XCTAssertFalse(s.isCompressed)
    }

    func testRejectsFileShorterThanLengthField() { assertRejects([1, 2, 3], mentioning: "truncated") }

    func testRejectsHeaderLengthBeyondFile() {
        var bytes = Fixtures.snapshotBytes()
        bytes.replaceSubrange(0..<8, with: [0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0, 0])
        assertRejects(bytes, mentioning: "runs past the end")
    }

    func testRejectsBadJSON() {
        assertRejects(withHeader(Fixtures.snapshotBytes()) { "{not json" + $0.dropFirst(9) }, mentioning: "not valid safetensors JSON")
    }

    func testRejectsOffsetsOutOfRange() {
        let bytes = Fixtures.snapshotBytes()
        assertRejects(Array(bytes.dropLast(16)), mentioning: "outside the")
    }

    func testRejectsOverlappingData() {
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "m", spans: [.text(0, 2)]))
        b.add("layers.0.key", dtype: .f32, shape: [1, 2, 2], floats: [0, 0, 0, 0])
        b.add("layers.0.value", dtype: .f32, shape: [1, 2, 2], floats: [0, 0, 0, 0])
        let broken = withHeader(b.bytes()) { $0.replacingOccurrences(of: "[16,32]", with: "[8,24]") }
        assertRejects(broken, mentioning: "overlap")
    }

    func testRejectsMissingLayer() {
        var b = Fixtures.builder(layers: 1)
        b.add("layers.2.key", dtype: .f16, shape: [2, 26, 16], floats: Fixtures.values(2 * 26 * 16, seed: 9))
        b.add("layers.2.value", dtype: .f16, shape: [2, 26, 16], floats: Fixtures.values(2 * 26 * 16, seed: 9))
        assertRejects(b.bytes(), mentioning: "missing tensor layers.1.key")
    }

    func testRejectsMissingValue() {
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "m", spans: [.text(0, 2)]))
        b.add("layers.0.key", dtype: .f32, shape: [1, 2, 2], floats: [0, 0, 0, 0])
        assertRejects(b.bytes(), mentioning: "missing tensor layers.0.value")
    }

    func testRejectsShapeMismatchBetweenLayers() {
        var b = Fixtures.builder(layers: 1)
        b.add("layers.1.key", dtype: .f16, shape: [2, 26, 8], floats: Fixtures.values(2 * 26 * 8, seed: 3))
        b.add("layers.1.value", dtype: .f16, shape: [2, 26, 8], floats: Fixtures.values(2 * 26 * 8, seed: 3))
        assertRejects(b.bytes(), mentioning: "layers.1.key has shape [2, 26, 8]")
    }

    func testRejectsDtypeMismatchBetweenLayers() {
        var b = Fixtures.builder(layers: 1)
        b.add("layers.1.key", dtype: .f32, shape: [2, 26, 16], floats: Fixtures.values(2 * 26 * 16, seed: 3))
        b.add("layers.1.value", dtype: .f32, shape: [2, 26, 16], floats: Fixtures.values(2 * 26 * 16, seed: 3))
        assertRejects(b.bytes(), mentioning: "layers.1.key is F32 but layers.0.key is F16")
    }

    func testRejectsSpansWithGap() {
        let spans: [Span] = [.text(0, 4), .image(5, rows: 4, cols: 4), .text(21, 26)]
        assertRejects(Fixtures.builder(spans: spans).bytes(), mentioning: "previous span ended at 4")
    }

    func testRejectsSpansThatStopShort() {
        let spans: [Span] = [.text(0, 4), .image(4, rows: 4, cols: 4)]
        assertRejects(Fixtures.builder(spans: spans).bytes(), mentioning: "spans end at 20 but seq_len is 26")
    }

    func testRejectsGridThatDoesNotMatchSpanLength() {
        let spans: [Span] = [.text(0, 4), Span(kind: .image, start: 4, end: 20, grid: [3, 5]), .text(20, 26)]
        assertRejects(Fixtures.builder(spans: spans).bytes(), mentioning: "rows*cols*frames = 3*5*1 = 15 but the span holds 16")
    }

    func testRejectsVideoFramesMismatch() {
        let spans: [Span] = [.text(0, 4), Span(kind: .video, start: 4, end: 20, grid: [2, 2], frames: 3), .text(20, 26)]
        assertRejects(Fixtures.builder(spans: spans).bytes(), mentioning: "2*2*3 = 12 but the span holds 16")
    }

    func testRejectsNaN() {
        var b = Fixtures.builder(layers: 1)
        var bad = Fixtures.values(2 * 26 * 16, seed: 5)
        bad[77] = .nan
        b.add("layers.1.key", dtype: .f16, shape: [2, 26, 16], floats: bad)
        b.add("layers.1.value", dtype: .f16, shape: [2, 26, 16], floats: Fixtures.values(2 * 26 * 16, seed: 6))
        assertRejects(b.bytes(), mentioning: "layers.1.key holds NaN or Inf")
    }

    func testRejectsInfinityInF32() {
        var b = Fixtures.builder(layers: 1, dtype: .f32)
        var bad = Fixtures.values(2 * 26 * 16, seed: 5)
        bad[3] = -.infinity
        b.add("layers.1.key", dtype: .f32, shape: [2, 26, 16], floats: Fixtures.values(2 * 26 * 16, seed: 6))
        b.add("layers.1.value", dtype: .f32, shape: [2, 26, 16], floats: bad)
        assertRejects(b.bytes(), mentioning: "layers.1.value holds NaN or Inf")
    }

    func testRejectsMissingModel() {
        var meta = SnapshotMetadata(model: "m", spans: Fixtures.spans).raw
        meta["kvsnap.model"] = nil
        var b = Fixtures.builder()
        b.metadata = meta
        assertRejects(b.bytes(), mentioning: "kvsnap.model: missing")
    }

    func testRejectsUnknownVersion() {
        var b = Fixtures.builder()
        b.metadata["kvsnap.version"] = "2"
        assertRejects(b.bytes(), mentioning: "version \"2\" is not supported")
    }

    func testRejectsSpansThatAreNotJSON() {
        var b = Fixtures.builder()
        b.metadata["kvsnap.spans"] = "[{\"kind\": \"audio\", \"start\": 0, \"end\": 26}]"
        assertRejects(b.bytes(), mentioning: "kvsnap.spans: not a JSON array of spans")
    }

    func testRejectsPromptQueryWithWrongHeadCount() {
        var b = Fixtures.builder(layers: 1, promptQuery: false)
        b.add("layers.0.prompt_query", dtype: .f16, shape: [3, 2, 16], floats: Fixtures.values(3 * 2 * 16, seed: 1))
        assertRejects(b.bytes(), mentioning: "q_heads a multiple of 2")
    }

    func testAcceptsAlreadyCompressedInputAndKeepsItsMerges() throws {
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "m", spans: Fixtures.spans, seqLen: 26))
        let kept: [Int32] = Array(0..<4) + [4, 6, 8, 10, 12, 14, 16, 18] + Array(20..<26)
        let sizes: [Int32] = Array(repeating: 1, count: 4) + Array(repeating: 2, count: 8) + Array(repeating: 1, count: 6)
        b.add("layers.0.key", dtype: .f16, shape: [2, 18, 16], floats: Fixtures.values(2 * 18 * 16, seed: 1))
        b.add("layers.0.value", dtype: .f16, shape: [2, 18, 16], floats: Fixtures.values(2 * 18 * 16, seed: 2))
        b.add("layers.0.positions", shape: [18], ints: kept)
        b.add("layers.0.sizes", shape: [18], ints: sizes)
        let s = try parse(b.bytes())
        XCTAssertTrue(s.isCompressed)
        XCTAssertEqual(s.seqLen, 26)
        XCTAssertEqual(s.positions(layer: 0), kept)
        XCTAssertEqual(s.floatLayer(0).sizes, sizes)
    }

    /// `layers` layers of two entries each, the first at `positions` of `sizes`.
    private func compressed(seqLen: Int?, layers: Int = 1, positions: [Int32] = [0, 2], sizes: [Int32] = [2, 2]) -> KVSnapBuilder {
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "m", spans: [.text(0, seqLen ?? 4)], seqLen: seqLen))
        for i in 0..<layers {
            b.add("layers.\(i).key", dtype: .f32, shape: [1, 2, 2], floats: [0, 0, 0, 0])
            b.add("layers.\(i).value", dtype: .f32, shape: [1, 2, 2], floats: [0, 0, 0, 0])
        }
        b.add("layers.0.positions", shape: [2], ints: positions)
        b.add("layers.0.sizes", shape: [2], ints: sizes)
        return b
    }

    func testRejectsCompressedInputWithoutSeqLen() {
        assertRejects(compressed(seqLen: nil).bytes(), mentioning: "kvsnap.seq_len: missing")
    }

    /// A compressed input's layer without positions holds every position: one that holds fewer
    /// was stored and then unreadable (its block's bytes disagreed with seq_len).
    func testRejectsACompressedInputsLayerWithoutPositionsThatHoldsFewerEntries() {
        assertRejects(compressed(seqLen: 4, layers: 2).bytes(), mentioning: "layers.1.key holds 2 entries and has no positions, so it must hold all 4")
    }

    /// The bounds of a stored entry are the input's: a 22-byte seq_len claim is refused before
    /// anything allocates for it, and so are widths a pack cannot hold.
    func testRejectsSizesAStoredEntryCannotHold() {
        assertRejects(compressed(seqLen: 3_000_000_000).bytes(), mentioning: "3000000000 is more than a stored entry holds (16777216)")
        var v = KVSnapBuilder(metadata: SnapshotMetadata(model: "m", spans: [.text(0, 2)]))
        v.add("layers.0.key", dtype: .f32, shape: [1, 2, 2], floats: [0, 0, 0, 0])
        v.add("layers.0.value", dtype: .f32, shape: [1, 2, 0], floats: [])
        assertRejects(v.bytes(), mentioning: "v_head_dim 0 is outside 1...65536")
    }

    /// A header that is not JSON says what and where, not Foundation's "not in the correct format".
    func testAHeaderThatIsNotJSONSaysWhere() {
        let header = Array(#"{"a":1,x:2}"#.utf8)
        let bytes = withUnsafeBytes(of: UInt64(header.count).littleEndian, Array.init) + header
        assertRejects(bytes, mentioning: "around character 7")
    }

    func testRejectsDescendingPositions() {
        assertRejects(compressed(seqLen: 4, positions: [2, 1], sizes: [1, 1]).bytes(), mentioning: "position 1 is not ascending")
    }

    func testBytePlanesRoundTrip() {
        for width in [2, 4] {
            let source = (0..<(37 * width)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            var planes = [UInt8](repeating: 0, count: source.count)
            var back = [UInt8](repeating: 0, count: source.count)
            source.withUnsafeBytes { s in planes.withUnsafeMutableBytes { BytePlanes.split(s.baseAddress!, count: 37, width: width, into: $0.baseAddress!) } }
            XCTAssertEqual(planes[0], source[0])
            XCTAssertEqual(planes[37], source[1], "second plane starts with the first element's second byte")
            planes.withUnsafeBytes { p in back.withUnsafeMutableBytes { BytePlanes.join(p.baseAddress!, count: 37, width: width, into: $0.baseAddress!) } }
            XCTAssertEqual(back, source)
        }
    }
}

final class TensorNameTests: XCTestCase {
    private func rejects(_ name: String, file: StaticString = #filePath, line: UInt = #line) {
        var b = Fixtures.builder(layers: 1)
        b.add(name, dtype: .f16, shape: [1], floats: [0])
        let bytes = b.bytes()
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try Snapshot(bytes: $0) }, name, file: file, line: line) {
            XCTAssertTrue("\($0)".contains(name), "\($0)", file: file, line: line)
        }
    }

    func testRejectsNamesOutsideTheKvsnapScheme() {
        for name in ["layers.", "layers.-1.key", "layers.01.key", "layers.0", "layers.0.keys", "weights.0.key", "layers.x.key"] {
            rejects(name)
        }
    }
}

final class DamagedSnapshotTests: XCTestCase {
    /// Flipped bytes and edited numbers anywhere in the header end in an error or a valid
    /// parse, never a trap.
    func testDamagedHeadersNeverCrash() {
        let original = Fixtures.snapshotBytes()
        let headerEnd = 8 + Int(original.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var state: UInt64 = 42
        func next() -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int(state >> 33)
        }
        var rejected = 0
        for trial in 0..<600 {
            var bytes = original
            if trial % 2 == 0 {
                bytes[8 + next() % (headerEnd - 8)] = UInt8(truncatingIfNeeded: next())
            } else {
                // Replace one digit run with a huge or negative number.
                let text = String(decoding: bytes[8..<headerEnd], as: UTF8.self)
                let digits = text.indices.filter { text[$0].isNumber }
                let at = digits[next() % digits.count]
                let replacement = ["9223372036854775807", "-1", "4611686018427387904", "0"][next() % 4]
                var edited = text
                edited.replaceSubrange(at...at, with: replacement)
                var header = Array(edited.utf8)
                while (8 + header.count) % 8 != 0 { header.append(0x20) }
                var out = [UInt8](repeating: 0, count: 8)
                withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.replaceSubrange(0..<8, with: $0) }
                bytes = out + header + original[headerEnd...]
            }
            do { _ = try bytes.withUnsafeBytes { try Snapshot(bytes: $0) } } catch { rejected += 1 }
        }
        XCTAssertGreaterThan(rejected, 300, "most damage is caught")
    }
}
