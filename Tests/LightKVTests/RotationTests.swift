import XCTest
@testable import LightKV

final class RotationTests: XCTestCase {
    func testHadamardRotationIsItsOwnInverseWithinRounding() {
        var rng = SeededRandom(11)
        for n in [2, 8, 64, 128, 256] {
            let x = (0..<n).map { _ in Float.random(in: -300...300, using: &rng) }
            var y = x
            y.withUnsafeMutableBufferPointer { HadamardRotation.apply($0.baseAddress!, n) }
            let norm = { (v: [Float]) in v.reduce(0) { $0 + $1 * $1 }.squareRoot() }
            XCTAssertEqual(norm(y), norm(x), accuracy: 1e-4 * norm(x), "orthogonal: the norm is kept")
            y.withUnsafeMutableBufferPointer { HadamardRotation.apply($0.baseAddress!, n) }
            for (a, b) in zip(x, y) { XCTAssertEqual(a, b, accuracy: 1e-5 * 300 * Float(n).squareRoot()) }
        }
        XCTAssertFalse(HadamardRotation.applies(to: 96))
    }

    func testRotationOfTwoEntriesIsTheHandComputedButterfly() {
        var x: [Float] = [3, 1, 0, 2]
        x.withUnsafeMutableBufferPointer { HadamardRotation.apply($0.baseAddress!, 4) }
        // H4·[a,b,c,d]/2 = [a+b+c+d, a−b+c−d, a+b−c−d, a−b−c+d]/2 = [6, 0, 2, 4]/2
        XCTAssertEqual(x, [3, 0, 1, 2])
    }

    /// Rows with one outlier channel hundreds of times the rest, quantized with a scale per row
    /// group (the outlier sets every group's range): the rotated block decodes back closer,
    /// and its kept rows stay exact.
    func testRotatedInt4RowsDecodeBackCloserWithOutliersAndKeptRowsExact() throws {
        var rng = SeededRandom(2)
        let shape = BlockShape(heads: 2, count: 64, dim: 64)
        var x = (0..<shape.elements).map { _ in Float.random(in: -1...1, using: &rng) }
        for h in 0..<2 { for t in 0..<64 { x[(h * 64 + t) * 64 + 7] = 300 * cosf(Float(t) * 0.01) } }
        let q = try XCTUnwrap(try IntegerQuantization(token: "int4g64s0m0t0"))
        func error(rotated: Bool) throws -> Float {
            let block = QuantizedBlock.encode(x, shape: shape, kept: [0, 5], settings: q, axis: .token, rotated: rotated)
            var out = [Float](repeating: 0, count: shape.elements)
            try block.bytes.withUnsafeBytes { b in
                try out.withUnsafeMutableBytes { o in
                    try BlockCodec.decode(b, encoding: block.encoding, elements: shape.elements, shape: shape, to: .f32, into: o.baseAddress!)
                }
            }
            for h in 0..<2 { for k in [0, 5] { for d in 0..<64 {
                let i = (h * 64 + k) * 64 + d
                XCTAssertEqual(out[i], Float(Float16(x[i])), "kept rows stay exact F16, unrotated")
            } } }
            // Error on the ordinary channels, where attention logits live.
            var e: Float = 0
            for i in x.indices where i % 64 != 7 { e += (out[i] - x[i]) * (out[i] - x[i]) }
            return e.squareRoot()
        }
        let plain = try error(rotated: false), rotated = try error(rotated: true)
        XCTAssertLessThan(rotated, plain, "rotation spreads the outlier: plain \(plain), rotated \(rotated)")
    }

    func testRotatedFlagRoundTripsThroughThePolicyName() throws {
        XCTAssertEqual(try XCTUnwrap(try IntegerQuantization(token: "int4g128m0t0r1")).name, "int4g128m0t0r1")
        XCTAssertThrowsError(try IntegerQuantization(token: "int4r2"))
        XCTAssertThrowsError(try IntegerQuantization(token: "int4r1g32"))
    }
}
