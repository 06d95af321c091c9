/// Where dequantized values go: F16, BF16 or F32 elements of the output tensor.
///
/// The dequantizers are generic over this so each output dtype gets its own specialised loop
/// that converts sixteen floats straight from registers, with no Float array in between.
protocol DequantizedOutput {
    /// Stores 16 values at elements `index..<index+16` of `base`.
    static func store(_ v: SIMD16<Float>, to base: UnsafeMutableRawPointer, at index: Int)
    static func store(_ x: Float, to base: UnsafeMutableRawPointer, at index: Int)
}

extension DequantizedOutput {
    /// Stores `count` F16 values (bit patterns) exactly, for the entries kept in F16.
    @inline(__always)
    static func store(f16 source: UnsafePointer<UInt16>, count: Int, to base: UnsafeMutableRawPointer, at index: Int) {
        if Self.self == F16Output.self {
            (base + 2 * index).copyMemory(from: source, byteCount: 2 * count)
            return
        }
        let s = UnsafeRawPointer(source)
        var d = 0
        while d + 16 <= count {
            store(SIMD16<Float>(s.loadUnaligned(fromByteOffset: 2 * d, as: SIMD16<Float16>.self)), to: base, at: index + d)
            d += 16
        }
        while d < count { store(Float(Float16(bitPattern: source[d])), to: base, at: index + d); d += 1 }
    }
}

enum F16Output: DequantizedOutput {
    @inline(__always)
    static func store(_ v: SIMD16<Float>, to base: UnsafeMutableRawPointer, at index: Int) {
        base.storeBytes(of: SIMD16<Float16>(v), toByteOffset: index * 2, as: SIMD16<Float16>.self)
    }
    @inline(__always)
    static func store(_ x: Float, to base: UnsafeMutableRawPointer, at index: Int) {
        base.storeBytes(of: Float16(x), toByteOffset: index * 2, as: Float16.self)
    }
}

enum BF16Output: DequantizedOutput {
    /// Round to nearest even, NaN kept a NaN: the lane-wise form of `Conversion.bfloat16Bits`.
    @inline(__always)
    static func store(_ v: SIMD16<Float>, to base: UnsafeMutableRawPointer, at index: Int) {
        let bits = unsafeBitCast(v, to: SIMD16<UInt32>.self)
        let rounding = ((bits &>> 16) & 1) &+ 0x7FFF
        var out = (bits &+ rounding) &>> 16
        let nan = v .!= v
        if any(nan) { out.replace(with: (bits &>> 16) | 0x40, where: nan) }
        base.storeBytes(of: SIMD16<UInt16>(truncatingIfNeeded: out), toByteOffset: index * 2, as: SIMD16<UInt16>.self)
    }
    @inline(__always)
    static func store(_ x: Float, to base: UnsafeMutableRawPointer, at index: Int) {
        base.storeBytes(of: Conversion.bfloat16Bits(x), toByteOffset: index * 2, as: UInt16.self)
    }
}

enum F32Output: DequantizedOutput {
    @inline(__always)
    static func store(_ v: SIMD16<Float>, to base: UnsafeMutableRawPointer, at index: Int) {
        base.storeBytes(of: v, toByteOffset: index * 4, as: SIMD16<Float>.self)
    }
    @inline(__always)
    static func store(_ x: Float, to base: UnsafeMutableRawPointer, at index: Int) {
        base.storeBytes(of: x, toByteOffset: index * 4, as: Float.self)
    }
}
