/// The float/integer tricks the quantizers share.
///
/// Rounding by adding 1.5·2^23 and building floats from `0x4B00_0000 | code` are exact and
/// branch-free, so loops over them vectorize, and the decoder's SIMD lanes and scalar tails
/// produce bit-identical values.
enum CodeMath {
    /// 1.5·2^23: adding it to a float in [0, 2^22) leaves the rounded integer in the low mantissa bits.
    static let roundingMagic: Float = 12_582_912
    /// 2^23 as bits: `0x4B00_0000 | code` is the float `2^23 + code`.
    static let exponentBits: UInt32 = 0x4B00_0000
    static let exponentValue: Float = 8_388_608

    /// The code of `x` in a group, rounded to nearest even and clamped to `0...levels`.
    /// Written as selects, not `min`/`max`, so loops over it vectorize.
    @inline(__always)
    static func code(_ x: Float, zero: Float, inverse: Float, levels: Float) -> UInt8 {
        let u = (x - zero) * inverse
        let t = u > levels ? levels : (u > 0 ? u : 0)
        return UInt8(truncatingIfNeeded: (t + roundingMagic).bitPattern)
    }

    /// The float's bits as an Int32 that orders like the float (for finite values).
    @inline(__always)
    static func orderedBits(_ x: Float) -> Int32 {
        let b = Int32(bitPattern: x.bitPattern)
        return b ^ ((b &>> 31) & 0x7FFF_FFFF)
    }

    @inline(__always)
    static func float(orderedBits k: Int32) -> Float {
        Float(bitPattern: UInt32(bitPattern: k ^ ((k &>> 31) & 0x7FFF_FFFF)))
    }

    /// Codes back to floats, exactly.
    @inline(__always)
    static func floats(_ c: SIMD16<UInt8>) -> SIMD16<Float> {
        let bits = SIMD16<UInt32>(truncatingIfNeeded: c) | SIMD16(repeating: exponentBits)
        return unsafeBitCast(bits, to: SIMD16<Float>.self) - SIMD16(repeating: exponentValue)
    }

    @inline(__always)
    static func value(_ c: UInt8, scale: Float, zero: Float) -> Float {
        let f = Float(bitPattern: UInt32(c) | exponentBits) - exponentValue
        return f * scale + zero
    }
}
