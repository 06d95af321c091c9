/// Scale and zero point of each quantization group, stored as F16.
///
/// A group holding values in `[min, max]` is coded as `x ≈ zero + code·scale`, `code` in
/// `0...levels`. The stored parameters are F16, so they are fitted *as F16* and the codes are
/// computed from the rounded values: `zero` is `min` rounded down to F16 and `scale` is
/// `(max - zero) / levels` rounded up to F16. Then `zero ≤ min` and
/// `zero + levels·scale ≥ max`, so every value has a code within `scale/2` of it, for the
/// parameters the decoder actually reads. A constant group whose value is an F16 gets scale 0
/// and decodes exactly. Inputs are clamped to the F16 range (±65504) first.
enum QuantParameters {
    static let f16Max: Float = 65504

    /// The fitted parameters of `count` groups.
    struct Fitted {
        /// F16 bit patterns, as stored in the block.
        var scaleBits: [UInt16]
        var zeroBits: [UInt16]
        /// The same values as Float, and `1/scale` (0 where scale is 0), for the code pass.
        var scale: [Float]
        var zero: [Float]
        var inverse: [Float]
    }

    /// Fits every group from its minimum and maximum.
    static func fit(mins: [Float], maxs: [Float], levels: Int) -> Fitted {
        let count = mins.count
        var f = Fitted(scaleBits: [UInt16](repeating: 0, count: count), zeroBits: [UInt16](repeating: 0, count: count),
                       scale: [Float](repeating: 0, count: count), zero: [Float](repeating: 0, count: count),
                       inverse: [Float](repeating: 0, count: count))
        let l = SIMD16<Float>(repeating: Float(levels))
        mins.withUnsafeBufferPointer { mn in maxs.withUnsafeBufferPointer { mx in
        f.scaleBits.withUnsafeMutableBufferPointer { sb in f.zeroBits.withUnsafeMutableBufferPointer { zb in
        f.scale.withUnsafeMutableBufferPointer { sf in f.zero.withUnsafeMutableBufferPointer { zf in
        f.inverse.withUnsafeMutableBufferPointer { inv in
            var i = 0
            while i < count {
                let lanes = min(16, count - i)
                var lo = SIMD16<Float>(repeating: 0), hi = SIMD16<Float>(repeating: 0)
                if lanes == 16 {
                    lo = UnsafeRawPointer(mn.baseAddress! + i).loadUnaligned(as: SIMD16<Float>.self)
                    hi = UnsafeRawPointer(mx.baseAddress! + i).loadUnaligned(as: SIMD16<Float>.self)
                } else {
                    for k in 0..<lanes { lo[k] = mn[i + k]; hi[k] = mx[i + k] }
                }
                let p = fit(min: lo, max: hi, levels: l)
                if lanes == 16 {
                    UnsafeMutableRawPointer(sb.baseAddress! + i).storeBytes(of: p.scaleBits, as: SIMD16<UInt16>.self)
                    UnsafeMutableRawPointer(zb.baseAddress! + i).storeBytes(of: p.zeroBits, as: SIMD16<UInt16>.self)
                    UnsafeMutableRawPointer(sf.baseAddress! + i).storeBytes(of: p.scale, as: SIMD16<Float>.self)
                    UnsafeMutableRawPointer(zf.baseAddress! + i).storeBytes(of: p.zero, as: SIMD16<Float>.self)
                    UnsafeMutableRawPointer(inv.baseAddress! + i).storeBytes(of: p.inverse, as: SIMD16<Float>.self)
                } else {
                    for k in 0..<lanes {
                        sb[i + k] = p.scaleBits[k]; zb[i + k] = p.zeroBits[k]
                        sf[i + k] = p.scale[k]; zf[i + k] = p.zero[k]; inv[i + k] = p.inverse[k]
                    }
                }
                i += 16
            }
        }}}}}}}
        return f
    }

    /// Sixteen groups at once.
    @inline(__always)
    static func fit(min lo: SIMD16<Float>, max hi: SIMD16<Float>, levels l: SIMD16<Float>)
        -> (scaleBits: SIMD16<UInt16>, zeroBits: SIMD16<UInt16>, scale: SIMD16<Float>, zero: SIMD16<Float>, inverse: SIMD16<Float>) {
        let mn = lo.clamped(lowerBound: SIMD16(repeating: -f16Max), upperBound: SIMD16(repeating: f16Max))
        let mx = hi.clamped(lowerBound: mn, upperBound: SIMD16(repeating: f16Max))
        // zero: min rounded down to F16 (next F16 below where nearest rounding went up).
        // Bit patterns are handled in 32-bit lanes so the Float comparison masks apply to them.
        var zb = SIMD16<UInt32>(truncatingIfNeeded: unsafeBitCast(SIMD16<Float16>(mn), to: SIMD16<UInt16>.self))
        let above = f32(zb) .> mn
        let positive = (zb & 0x8000 .== 0) .& (zb .!= 0)
        var down = zb &+ 1
        down.replace(with: zb &- 1, where: positive)
        down.replace(with: 0x8001, where: zb .== 0)
        zb.replace(with: down, where: above)
        let zero = f32(zb)
        // scale: (max - zero) / levels rounded up to F16, never past the largest finite F16.
        let range = mx - zero
        let wanted = (range / l).clamped(lowerBound: SIMD16(repeating: 0), upperBound: SIMD16(repeating: f16Max))
        var sb = SIMD16<UInt32>(truncatingIfNeeded: unsafeBitCast(SIMD16<Float16>(wanted), to: SIMD16<UInt16>.self))
        let short = f32(sb) * l .< range
        sb.replace(with: sb &+ 1, where: short .& (sb .< 0x7BFF))
        let scale = f32(sb)
        var inverse = SIMD16<Float>(repeating: 1) / scale
        inverse.replace(with: 0, where: scale .== 0)
        return (SIMD16<UInt16>(truncatingIfNeeded: sb), SIMD16<UInt16>(truncatingIfNeeded: zb), scale, zero, inverse)
    }

    /// F16 bit patterns (in 32-bit lanes) as floats.
    @inline(__always)
    private static func f32(_ bits: SIMD16<UInt32>) -> SIMD16<Float> {
        SIMD16<Float>(unsafeBitCast(SIMD16<UInt16>(truncatingIfNeeded: bits), to: SIMD16<Float16>.self))
    }
}

/// The float/integer tricks the quantizers share, so the SIMD lanes and the scalar tails
/// compute bit-identical results.
enum CodeMath {
    /// 1.5·2^23: adding it to a float in [0, 2^22) leaves the rounded integer in the low mantissa bits.
    static let roundingMagic: Float = 12_582_912
    /// 2^23 as bits: `0x4B00_0000 | code` is the float `2^23 + code`.
    static let exponentBits: UInt32 = 0x4B00_0000
    static let exponentValue: Float = 8_388_608

    /// The code of `x` in a group, rounded to nearest even and clamped to `0...levels`.
    @inline(__always)
    static func codes(_ x: SIMD16<Float>, zero: SIMD16<Float>, inverse: SIMD16<Float>, levels: SIMD16<Float>) -> SIMD16<UInt8> {
        let t = ((x - zero) * inverse).clamped(lowerBound: SIMD16(repeating: 0), upperBound: levels)
        let r = unsafeBitCast(t + SIMD16(repeating: roundingMagic), to: SIMD16<UInt32>.self)
        return SIMD16<UInt8>(truncatingIfNeeded: r)
    }

    @inline(__always)
    static func code(_ x: Float, zero: Float, inverse: Float, levels: Float) -> UInt8 {
        let t = Swift.min(Swift.max((x - zero) * inverse, 0), levels)
        return UInt8(truncatingIfNeeded: (t + roundingMagic).bitPattern)
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
