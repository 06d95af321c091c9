import XCTest
@testable import LightKV

/// What the format spec says about a block, computed here independently of the encoder.
private struct SpecLayout {
    let bits: Int, axis: QuantAxis, group: Int, heads: Int, count: Int, dim: Int, kept: Int
    init(_ b: [UInt8], axis: QuantAxis) {
        func u32(_ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 | Int(b[o + 2]) << 16 | Int(b[o + 3]) << 24 }
        bits = Int(b[4]); self.axis = axis; group = u32(8); heads = u32(12); count = u32(16); dim = u32(20); kept = u32(24)
    }
    var n: Int { count - kept }
    var parameters: Int {
        axis == .channel ? heads * ((n + group - 1) / group) * dim : heads * n * ((dim + group - 1) / group)
    }
    var scalesOffset: Int { 28 + 4 * kept + 2 * heads * kept * dim }
    /// The stored F16 scale of the group holding element `d` of quantized row `r` of head `h`.
    func scale(_ b: [UInt8], h: Int, r: Int, d: Int) -> Float {
        let p = axis == .channel
            ? (h * ((n + group - 1) / group) + r / group) * dim + d
            : (h * n + r) * ((dim + group - 1) / group) + d / group
        let bits = UInt16(b[scalesOffset + p]) | UInt16(b[scalesOffset + parameters + p]) << 8
        return Float(Float16(bitPattern: bits))
    }
}

final class QuantTests: XCTestCase {
    private func randomValues(_ count: Int, _ rng: inout SeededRandom, spread: Float = 2) -> [Float] {
        (0..<count).map { _ in Float.random(in: -spread...spread, using: &rng) }
    }

    private func decode(_ block: EncodedBlock, _ shape: BlockShape, as dtype: DType = .f32) throws -> [UInt8] {
        var out = [UInt8](repeating: 0xAA, count: shape.elements * dtype.size)
        try block.bytes.withUnsafeBytes { b in
            try out.withUnsafeMutableBytes { o in
                try BlockCodec.decode(b, encoding: block.encoding, elements: shape.elements, shape: shape,
                                      to: dtype, into: o.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 16)!)
            }
        }
        return out
    }

    private func floats(_ bytes: [UInt8]) -> [Float] {
        bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    /// Checks the promised bound for every quantized element and exactness for kept ones.
    private func assertWithinBound(_ x: [Float], shape: BlockShape, kept: [Int], bits: Int, group: Int, axis: QuantAxis,
                                   file: StaticString = #filePath, line: UInt = #line) throws {
        let q = IntegerQuantization(bits: bits, group: group, keep: .nothing)
        let block = QuantizedBlock.encode(x, shape: shape, kept: kept, settings: q, axis: axis)
        let y = floats(try decode(block, shape))
        let spec = SpecLayout(block.bytes, axis: axis)
        XCTAssertEqual(spec.kept, kept.count, file: file, line: line)
        let keptSet = Set(kept)
        let rows = (0..<shape.count).filter { !keptSet.contains($0) }
        for h in 0..<shape.heads {
            for k in kept {
                for d in 0..<shape.dim {
                    let i = (h * shape.count + k) * shape.dim + d
                    XCTAssertEqual(y[i], Float(Float16(x[i])), "kept entry \(k) not exact F16", file: file, line: line)
                }
            }
            for (r, j) in rows.enumerated() {
                for d in 0..<shape.dim {
                    let i = (h * shape.count + j) * shape.dim + d
                    let s = spec.scale(block.bytes, h: h, r: r, d: d)
                    let err = abs(x[i] - y[i])
                    // zero + code·scale is itself rounded to Float: allow one ulp of the value on top.
                    if err > s / 2 * (1 + 1e-5) + x[i].ulp {
                        XCTFail("int\(bits) g\(group) \(axis) shape \(shape) h\(h) r\(r) d\(d): |\(x[i]) - \(y[i])| = \(err) > scale/2 = \(s / 2)",
                                file: file, line: line)
                        return
                    }
                }
            }
        }
    }

    func testInt8KeysAndValuesStayWithinHalfTheStoredScale() throws {
        var rng = SeededRandom(1)
        let shape = BlockShape(heads: 2, count: 70, dim: 48)   // 70 tokens: ragged last token group
        var x = randomValues(shape.elements, &rng)
        for h in 0..<2 { for t in 0..<70 { x[(h * 70 + t) * 48 + 5] *= 40 } }   // an outlier channel
        try assertWithinBound(x, shape: shape, kept: [], bits: 8, group: 32, axis: .channel)
        try assertWithinBound(x, shape: shape, kept: [], bits: 8, group: 32, axis: .token)
    }

    func testRandomShapesGroupsAndBitsStayWithinBound() throws {
        var rng = SeededRandom(7)
        for _ in 0..<60 {
            let shape = BlockShape(heads: Int.random(in: 1...3, using: &rng), count: Int.random(in: 0...75, using: &rng),
                                   dim: Int.random(in: 1...70, using: &rng))
            let bits = [8, 4, 2].randomElement(using: &rng)!
            let group = [1, 2, 4, 8, 16, 32, 64, 128].randomElement(using: &rng)!
            let kept = (0..<shape.count).filter { _ in Int.random(in: 0..<5, using: &rng) == 0 }
            let spread = [Float(0.001), 1, 300].randomElement(using: &rng)!
            let x = randomValues(shape.elements, &rng, spread: spread)
            for axis in [QuantAxis.channel, .token] {
                try assertWithinBound(x, shape: shape, kept: kept, bits: bits, group: group, axis: axis)
            }
        }
    }

    func testSubByteCodesPackAndUnpackExactlyForEveryLength() {
        var rng = SeededRandom(3)
        for bits in [4, 2, 8] {
            for count in 0..<150 {
                let codes = (0..<count).map { _ in UInt8.random(in: 0...UInt8((1 << bits) - 1), using: &rng) }
                let bytes = CodePacking.rowBytes(count: count, bits: bits)
                var packed = [UInt8](repeating: 0xFF, count: bytes)
                var back = [UInt8](repeating: 0xFF, count: count)
                codes.withUnsafeBufferPointer { c in packed.withUnsafeMutableBufferPointer { p in
                    CodePacking.pack(c.baseAddress ?? UnsafePointer(bitPattern: 16)!, count: count, bits: bits,
                                     into: p.baseAddress ?? UnsafeMutablePointer(bitPattern: 16)!)
                }}
                packed.withUnsafeBufferPointer { p in back.withUnsafeMutableBufferPointer { b in
                    CodePacking.unpack(p.baseAddress ?? UnsafePointer(bitPattern: 16)!, count: count, bits: bits,
                                       into: b.baseAddress ?? UnsafeMutablePointer(bitPattern: 16)!)
                }}
                XCTAssertEqual(back, codes, "bits \(bits) count \(count)")
                if count * bits % 8 != 0 {
                    XCTAssertEqual(packed.last! >> UInt8(count * bits % 8), 0, "padding bits must be zero (bits \(bits) count \(count))")
                }
            }
        }
    }

    /// The example of docs/FORMAT.md ("Quantized blocks"), byte for byte.
    func testBlockBytesMatchTheDocumentedFormat() throws {
        // Values [1, 2, 3]: entry 0 = [0, 1, 2] quantized, entry 1 = [5, 6, 7] kept; G = 2 channels.
        let shape = BlockShape(heads: 1, count: 2, dim: 3)
        let block = QuantizedBlock.encode([0, 1, 2, 5, 6, 7], shape: shape, kept: [1],
                                          settings: IntegerQuantization(bits: 8, group: 2), axis: .token)
        let expected: [UInt8] = [
            0x4B, 0x56, 0x51, 0x01, 8, 1, 1, 0,     // magic, bits, axis token, flags: delta rows
            2, 0, 0, 0, 1, 0, 0, 0,                 // G = 2, heads = 1
            2, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0,     // count = 2, dim = 3, kept = 1
            1, 0, 0, 0,                             // kept index 1
            0x00, 0x00, 0x00, 0x45, 0x46, 0x47,     // kept F16 5, 6, 7: low plane, high plane
            0x05, 0x00, 0x1C, 0x00,                 // scales 0x1C05 (1/255 rounded up), 0: planes
            0x00, 0x00, 0x00, 0x40,                 // zeros 0, 2.0: planes
            0x00, 0xFF, 0x00,                       // codes of entry 0
        ]
        XCTAssertEqual(block.bytes, expected)
        XCTAssertEqual(floats(try decode(block, shape)), [0, Float(Float16(bitPattern: 0x1C05)) * 255, 2, 5, 6, 7])
    }

    func testInt4PacksTwoCodesPerByteLowNibbleFirst() {
        let codes: [UInt8] = [1, 2, 3]
        var packed = [UInt8](repeating: 0xFF, count: 2)
        CodePacking.pack(codes, count: 3, bits: 4, into: &packed)
        XCTAssertEqual(packed, [0x21, 0x03])
    }

    func testKeepRuleKeepsTextSinksAndLargeEntriesExact() throws {
        // text [0,6), image [6,22), text [22,26); entry sizes: one merged entry of size 9.
        let spans = [Span.text(0, 6), Span.image(6, rows: 4, cols: 4), Span.text(22, 26, role: .prompt)]
        let positions: [Int32] = [0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 18, 20, 22, 23, 24, 25]
        var sizes = [Int32](repeating: 1, count: positions.count)
        sizes[7] = 9
        let rule = KeepRule(text: true, sinks: 2, minSize: 8)
        let kept = rule.keptEntries(positions: positions, sizes: sizes, spans: spans)
        XCTAssertEqual(kept, [0, 1, 2, 3, 4, 5, 7, 14, 15, 16, 17])
        XCTAssertEqual(KeepRule(text: false, sinks: 7, minSize: 0).keptEntries(positions: positions, sizes: sizes, spans: spans),
                       [0, 1, 2, 3, 4, 5, 6])

        var rng = SeededRandom(5)
        let layer = KVLayer(kvHeads: 2, headDim: 20, vHeadDim: 12,
                            keys: randomValues(2 * positions.count * 20, &rng), values: randomValues(2 * positions.count * 12, &rng),
                            positions: positions, sizes: sizes)
        let context = LayerContext(index: 0, layerCount: 1, spans: spans, seqLen: 26, promptQuery: nil)
        let spec = QuantSpec.integer(IntegerQuantization(bits: 2, group: 4, keep: rule))
        let (k, v) = spec.encode(layer, context: context)
        XCTAssertEqual(k.encoding, BlockEncoding(scheme: "int2", group: 4, axis: "channel"))
        XCTAssertEqual(v.encoding, BlockEncoding(scheme: "int2", group: 4, axis: "token"))
        for (block, data, dim) in [(k, layer.keys, 20), (v, layer.values, 12)] {
            let shape = BlockShape(heads: 2, count: positions.count, dim: dim)
            let out = try decode(block, shape, as: .f16)
            let halves = out.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
            for h in 0..<2 { for j in kept { for d in 0..<dim {
                let i = (h * positions.count + j) * dim + d
                XCTAssertEqual(halves[i], Float16(data[i]).bitPattern, "kept entry \(j) must be the exact F16")
            }}}
        }
    }

    func testEmptyShapesRoundTrip() throws {
        for shape in [BlockShape(heads: 2, count: 3, dim: 0), BlockShape(heads: 0, count: 3, dim: 4), BlockShape(heads: 2, count: 0, dim: 4)] {
            let kept = shape.count > 1 ? [0, 2] : []
            for axis in [QuantAxis.channel, .token] {
                let block = QuantizedBlock.encode([], shape: shape, kept: kept, settings: IntegerQuantization(bits: 4), axis: axis)
                XCTAssertEqual(block.bytes.count, 28 + 4 * kept.count, "\(shape)")
                XCTAssertEqual(try decode(block, shape), [], "\(shape)")
            }
        }
    }

    func testConstantGroupsDecodeExactly() throws {
        let shape = BlockShape(heads: 2, count: 37, dim: 19)
        var x = [Float](repeating: 0, count: shape.elements)
        for h in 0..<2 { for t in 0..<37 { for d in 0..<19 { x[(h * 37 + t) * 19 + d] = Float(d) * 0.25 - 1.5 } } }
        let q = IntegerQuantization(bits: 2, group: 8, keep: .nothing)
        // Keys: every channel constant over tokens; values: constant rows of zero.
        XCTAssertEqual(floats(try decode(QuantizedBlock.encode(x, shape: shape, kept: [], settings: q, axis: .channel), shape)), x)
        let zeros = [Float](repeating: 0.625, count: shape.elements)
        XCTAssertEqual(floats(try decode(QuantizedBlock.encode(zeros, shape: shape, kept: [], settings: q, axis: .token), shape)), zeros)
    }

    func testF16BF16AndF32OutputsAgree() throws {
        var rng = SeededRandom(11)
        let shape = BlockShape(heads: 3, count: 41, dim: 40)
        let x = randomValues(shape.elements, &rng)
        for axis in [QuantAxis.channel, .token] {
            let block = QuantizedBlock.encode(x, shape: shape, kept: [0, 40], settings: IntegerQuantization(bits: 4, group: 16), axis: axis)
            let f32 = floats(try decode(block, shape))
            let f16 = try decode(block, shape, as: .f16).withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
            let bf16 = try decode(block, shape, as: .bf16).withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }
            XCTAssertEqual(f16, f32.map { Float16($0).bitPattern })
            XCTAssertEqual(bf16, f32.map { Conversion.bfloat16Bits($0) })
            XCTAssertEqual(try decode(block, shape), try decode(block, shape), "decoding is deterministic")
        }
    }

    func testInt4AndInt2BlocksAreHalfAndQuarterOfInt8() {
        var rng = SeededRandom(2)
        let shape = BlockShape(heads: 4, count: 256, dim: 128)
        let x = randomValues(shape.elements, &rng)
        let size = { (bits: Int) in
            QuantizedBlock.encode(x, shape: shape, kept: [], settings: IntegerQuantization(bits: bits, keep: .nothing), axis: .channel).bytes.count
        }
        let codes8 = shape.elements, params = 2 * 2 * shape.elements / 32
        XCTAssertEqual(size(8), 28 + params + codes8)
        XCTAssertEqual(size(4), 28 + params + codes8 / 2)
        XCTAssertEqual(size(2), 28 + params + codes8 / 4)
    }

    func testQuantizationPolicyPartsParse() throws {
        XCTAssertEqual(try QuantSpec(token: "int8"), .integer(IntegerQuantization(bits: 8, group: 32, keep: .standard)))
        XCTAssertEqual(try QuantSpec(token: "int4g64")?.name, "int4g64")
        XCTAssertEqual(try QuantSpec(token: "int2g128s0m0t0"),
                       .integer(IntegerQuantization(bits: 2, group: 128, keep: .nothing)))
        XCTAssertEqual(try QuantSpec(token: "int4s8")?.name, "int4g32s8")
        XCTAssertEqual(try QuantSpec(token: "f16"), QuantSpec.none)
        XCTAssertNil(try QuantSpec(token: "zstd3"))
        XCTAssertEqual(try Policy(parsing: "int4g64+zstd9").name, "int4g64+zstd9")
        XCTAssertEqual(try Policy(parsing: "int8").name, "int8g32+zstd3")
    }

    func testInvalidQuantizationPartsNameThePart() {
        for (text, part, why) in [("int3", "int3", "bits"), ("none+int4g0+lz4", "int4g0", "power of two"),
                                  ("int4g33", "int4g33", "power of two"), ("int4g", "int4g", "needs a number"),
                                  ("int8x2", "int8x2", "unknown setting"), ("int4s4g32", "int4s4g32", "order"),
                                  ("int4t2", "int4t2", "t takes"), ("int", "int", "needs a number"),
                                  ("int8g99999999999", "int8g99999999999", "needs a number")] {
            XCTAssertThrowsError(try Policy(parsing: text), text) { error in
                guard case .badPart(let p, _, let w) = error as? PolicyError else { return XCTFail("\(error)") }
                XCTAssertEqual(p, part, text)
                XCTAssertTrue(w.contains(why), "\(text): \(w)")
            }
        }
    }

    func testNoneStillStoresF16Planes() {
        let layer = KVLayer(kvHeads: 1, headDim: 2, vHeadDim: 2, keys: [1, 2], values: [3, 4], positions: [0], sizes: [1])
        let (k, v) = QuantSpec.none.encode(layer, context: LayerContext(index: 0, layerCount: 1, spans: [.text(0, 1)], seqLen: 1, promptQuery: nil))
        XCTAssertEqual(k.encoding, .raw(.f16))
        XCTAssertEqual(v.bytes.count, 4)
    }

    // MARK: damaged blocks

    private func sample() -> (EncodedBlock, BlockShape) {
        var rng = SeededRandom(9)
        let shape = BlockShape(heads: 2, count: 9, dim: 5)
        let block = QuantizedBlock.encode(randomValues(shape.elements, &rng), shape: shape, kept: [1, 4],
                                          settings: IntegerQuantization(bits: 4, group: 4), axis: .channel)
        return (block, shape)
    }

    private func assertThrows(_ bytes: [UInt8], _ encoding: BlockEncoding, _ shape: BlockShape, _ message: String,
                              where check: (BlockError) -> Bool = { _ in true }, line: UInt = #line) {
        XCTAssertThrowsError(try decode(EncodedBlock(encoding: encoding, bytes: bytes), shape), message, line: line) { e in
            guard let e = e as? BlockError else { return XCTFail("not a BlockError: \(e)", line: line) }
            XCTAssertTrue(check(e), "\(message): \(e)", line: line)
        }
    }

    func testTruncatedOrPaddedBlocksThrow() {
        let (block, shape) = sample()
        for n in 0..<block.bytes.count {
            assertThrows(Array(block.bytes.prefix(n)), block.encoding, shape, "prefix \(n)")
        }
        assertThrows(block.bytes + [0], block.encoding, shape, "trailing byte") {
            $0 == .sizeMismatch(scheme: "int4", expected: block.bytes.count, actual: block.bytes.count + 1)
        }
    }

    func testBadHeaderFieldsAreNamed() {
        let (block, shape) = sample()
        func with(_ offset: Int, _ value: UInt8) -> [UInt8] { var b = block.bytes; b[offset] = value; return b }
        func field(_ name: String) -> (BlockError) -> Bool {
            { if case .badHeader(_, let f, _, _) = $0 { return f.hasPrefix(name) }; return false }
        }
        assertThrows(with(0, 0x4C), block.encoding, shape, "magic", where: field("magic"))
        assertThrows(with(4, 8), block.encoding, shape, "bits", where: field("bits"))
        assertThrows(with(5, 1), block.encoding, shape, "axis", where: field("axis"))
        assertThrows(with(5, 7), block.encoding, shape, "axis", where: field("axis"))
        assertThrows(with(8, 3), block.encoding, shape, "group", where: field("group"))
        assertThrows(with(12, 3), block.encoding, shape, "heads", where: field("heads"))
        assertThrows(with(20, 6), block.encoding, shape, "dim", where: field("dim"))
        assertThrows(with(24, 10), block.encoding, shape, "kept", where: field("kept"))
        assertThrows(block.bytes, block.encoding, BlockShape(heads: 2, count: 8, dim: 5), "shape", where: field("count"))
        assertThrows(block.bytes, BlockEncoding(scheme: "int4", group: 8, axis: "channel"), shape, "group", where: field("group"))
        XCTAssertTrue(BlockError.badHeader(scheme: "int4", field: "dim", value: 6, expected: "5").description.contains("dim is 6"))
    }

    func testBadKeptIndicesAndNonFiniteParametersThrow() {
        let (block, shape) = sample()
        var b = block.bytes
        b[28] = 9   // first kept index 9 >= count
        assertThrows(b, block.encoding, shape, "index out of range") { $0 == .badKeptIndex(scheme: "int4", slot: 0, value: 9, count: 9) }
        b = block.bytes
        b[32] = 1   // second kept index equals the first
        assertThrows(b, block.encoding, shape, "not ascending") { $0 == .badKeptIndex(scheme: "int4", slot: 1, value: 1, count: 9) }
        let spec = SpecLayout(block.bytes, axis: .channel)
        b = block.bytes
        b[spec.scalesOffset + spec.parameters] = 0x7C   // high byte of scale 0: Inf
        assertThrows(b, block.encoding, shape, "inf scale") { $0 == .nonFinite(scheme: "int4", section: "scales") }
    }

    func testWrongElementCountAndIntegerOutputAreRejected() throws {
        let (block, shape) = sample()
        var out = [UInt8](repeating: 0, count: 4 * shape.elements + 4)
        try out.withUnsafeMutableBytes { o in
            try block.bytes.withUnsafeBytes { b in
                XCTAssertThrowsError(try BlockCodec.decode(b, encoding: block.encoding, elements: shape.elements + 1, shape: shape,
                                                           to: .f16, into: o.baseAddress!)) { e in
                    XCTAssertEqual(e as? BlockError, .badHeader(scheme: "int4", field: "elements", value: shape.elements + 1,
                                                                expected: "\(shape.elements) (heads·count·dim)"))
                }
                XCTAssertThrowsError(try BlockCodec.decode(b, encoding: block.encoding, elements: shape.elements, shape: shape,
                                                           to: .i32, into: o.baseAddress!)) { e in
                    XCTAssertEqual(e as? BlockError, .unsupportedOutput(scheme: "int4", dtype: "I32"))
                }
            }
        }
    }

    func testRandomCorruptionNeverCrashes() {
        var rng = SeededRandom(13)
        let shape = BlockShape(heads: 2, count: 11, dim: 7)
        let x = randomValues(shape.elements, &rng)
        for (bits, axis) in [(4, QuantAxis.channel), (8, .token), (2, .token), (2, .channel)] {
            let block = QuantizedBlock.encode(x, shape: shape, kept: [0, 5, 10], settings: IntegerQuantization(bits: bits, group: 2), axis: axis)
            for _ in 0..<600 {
                var b = block.bytes
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                if let out = try? decode(EncodedBlock(encoding: block.encoding, bytes: b), shape) {
                    XCTAssertEqual(out.count, shape.elements * 4)
                }
            }
        }
    }
}

final class CodeDeltaTests: XCTestCase {
    func testDeltaCodingIsExactForEveryWidthAndRowLength() {
        var state: UInt64 = 7
        for bits in [8, 4, 2] {
            for rowBytes in [1, 3, 15, 16, 17, 31, 48, 64] {
                let rows = 9
                let original = (0..<(rows * rowBytes)).map { _ -> UInt8 in
                    state = state &* 6364136223846793005 &+ 1442695040888963407
                    return UInt8(truncatingIfNeeded: state >> 56)
                }
                var codes = original
                codes.withUnsafeMutableBufferPointer { CodeDelta.encode($0.baseAddress!, rows: rows, rowBytes: rowBytes, bits: bits) }
                XCTAssertEqual(Array(codes[0..<rowBytes]), Array(original[0..<rowBytes]), "the first row is stored as is")
                // Every byte is its lanes' difference from the original byte a row above (the
                // vectorised steps and the byte loop agree; packs stay bit-identical).
                let mask: UInt8 = bits == 8 ? 0xFF : bits == 4 ? 0x0F : 0x33
                for i in rowBytes..<codes.count where codes[i] != CodeDelta.subtract(original[i], original[i - rowBytes], mask: mask) {
                    XCTFail("bits \(bits), row of \(rowBytes) bytes: byte \(i) differs from the lane-wise difference")
                    break
                }
                codes.withUnsafeMutableBufferPointer { CodeDelta.decode($0.baseAddress!, rows: rows, rowBytes: rowBytes, bits: bits) }
                XCTAssertEqual(codes, original, "bits \(bits), row of \(rowBytes) bytes")
            }
        }
    }

    func testDeltasStayInsideTheirLanes() {
        // int4: row 1 = row 0 + 1 in both nibbles (mod 16) stores 0x11 whatever row 0 held.
        var codes: [UInt8] = [0xF0, 0x0F, 0x01, 0x10]
        codes.withUnsafeMutableBufferPointer { CodeDelta.encode($0.baseAddress!, rows: 2, rowBytes: 2, bits: 4) }
        XCTAssertEqual(codes, [0xF0, 0x0F, 0x11, 0x11])
        // int2: each lane minus one (mod 4) is three in every lane.
        var two: [UInt8] = [0b01_01_01_01, 0b00_00_00_00]
        two.withUnsafeMutableBufferPointer { CodeDelta.encode($0.baseAddress!, rows: 2, rowBytes: 1, bits: 2) }
        XCTAssertEqual(two[1], 0b11_11_11_11)
    }
}
