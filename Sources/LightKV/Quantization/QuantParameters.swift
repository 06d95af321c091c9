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

    /// Fits `count` groups from their minima and maxima: the stored F16 bits of scale and zero,
    /// and, for the code pass, the zero as Float and `1/scale` (0 where the scale is 0).
    ///
    /// A plain loop of selects (no stdlib `clamped`/`pointwiseMin`, which run lane by lane), so
    /// LLVM vectorizes it with F16C conversions.
    static func fit(mins: UnsafePointer<Float>, maxs: UnsafePointer<Float>, count: Int, levels: Int,
                    scaleBits: UnsafeMutablePointer<UInt16>, zeroBits: UnsafeMutablePointer<UInt16>,
                    zero: UnsafeMutablePointer<Float>, inverse: UnsafeMutablePointer<Float>) {
        let l = Float(levels)
        for i in 0..<count { zeroBits[i] = zeroPoint(min: mins[i]) }
        for i in 0..<count { zero[i] = Float(Float16(bitPattern: zeroBits[i])) }
        for i in 0..<count { scaleBits[i] = scale(max: maxs[i], zero: zero[i], levels: l) }
        for i in 0..<count {
            let s = Float(Float16(bitPattern: scaleBits[i]))
            inverse[i] = s > 0 ? 1 / s : 0
        }
    }

    /// `min` clamped to the F16 range and rounded down to an F16.
    @inline(__always)
    static func zeroPoint(min x: Float) -> UInt16 {
        let mn = x < -f16Max ? -f16Max : (x > f16Max ? f16Max : x)
        let b = Float16(mn).bitPattern
        // The next F16 below b: one step toward -Inf (from +0 that is the smallest negative).
        let down: UInt16 = b == 0 ? 0x8001 : (b & 0x8000 == 0 ? b &- 1 : b &+ 1)
        return Float(Float16(bitPattern: b)) > mn ? down : b
    }

    /// `(max - zero) / levels` rounded up to an F16, at most the largest finite F16.
    @inline(__always)
    static func scale(max x: Float, zero: Float, levels: Float) -> UInt16 {
        let mx = x > f16Max ? f16Max : (x < zero ? zero : x)
        let range = mx - zero
        let q = range / levels
        let b = Float16(q > f16Max ? f16Max : q).bitPattern
        let short = Float(Float16(bitPattern: b)) * levels < range && b < 0x7BFF
        return short ? b &+ 1 : b
    }
}
