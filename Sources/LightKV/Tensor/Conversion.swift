/// Bulk conversions between the stored float formats and `Float`.
///
/// These are the hot loops every read and write goes through, so they work on raw
/// little-endian buffers in place; with `-target-cpu haswell` the Float16 casts compile to F16C.
public enum Conversion {
    /// Decodes `count` elements of `dtype` from `source` into `destination`.
    public static func toFloat(
        _ source: UnsafeRawPointer, dtype: DType, count: Int, into destination: UnsafeMutablePointer<Float>
    ) {
        switch dtype {
        case .f16:
            let s = source.assumingMemoryBound(to: Float16.self)
            var i = 0
            while i + 8 <= count {
                let v = UnsafeRawPointer(s + i).loadUnaligned(as: SIMD8<Float16>.self)
                UnsafeMutableRawPointer(destination + i).storeBytes(of: SIMD8<Float>(v), as: SIMD8<Float>.self)
                i += 8
            }
            while i < count { destination[i] = Float(s[i]); i += 1 }
        case .bf16:
            let s = source.assumingMemoryBound(to: UInt16.self)
            for i in 0..<count { destination[i] = Float(bitPattern: UInt32(s[i]) << 16) }
        case .f32:
            UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: count * 4)
        case .i32:
            let s = source.assumingMemoryBound(to: Int32.self)
            for i in 0..<count { destination[i] = Float(s[i]) }
        case .i64:
            for i in 0..<count { destination[i] = Float(Int64(littleEndian: source.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))) }
        }
    }

    /// Encodes `count` floats into `dtype` at `destination` (round to nearest even).
    public static func fromFloat(
        _ source: UnsafePointer<Float>, count: Int, dtype: DType, into destination: UnsafeMutableRawPointer
    ) {
        switch dtype {
        case .f16:
            let d = destination.assumingMemoryBound(to: Float16.self)
            var i = 0
            while i + 8 <= count {
                let v = UnsafeRawPointer(source + i).loadUnaligned(as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(d + i).storeBytes(of: SIMD8<Float16>(v), as: SIMD8<Float16>.self)
                i += 8
            }
            while i < count { d[i] = Float16(source[i]); i += 1 }
        case .bf16:
            let d = destination.assumingMemoryBound(to: UInt16.self)
            for i in 0..<count { d[i] = bfloat16Bits(source[i]) }
        case .f32:
            destination.copyMemory(from: source, byteCount: count * 4)
        case .i32:
            let d = destination.assumingMemoryBound(to: Int32.self)
            for i in 0..<count { d[i] = Int32(source[i].rounded()) }
        case .i64:
            for i in 0..<count { destination.storeBytes(of: Int64(source[i].rounded()).littleEndian, toByteOffset: i * 8, as: Int64.self) }
        }
    }

    /// Decodes a whole buffer of `dtype` into a new `[Float]`.
    public static func floats(_ bytes: UnsafeRawBufferPointer, dtype: DType) -> [Float] {
        let count = bytes.count / dtype.size
        return [Float](unsafeUninitializedCapacity: count) { out, n in
            if count > 0 { toFloat(bytes.baseAddress!, dtype: dtype, count: count, into: out.baseAddress!) }
            n = count
        }
    }

    /// Encodes floats into a new byte array of `dtype`.
    public static func bytes(_ values: [Float], dtype: DType) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: values.count * dtype.size) { out, n in
            values.withUnsafeBufferPointer { v in
                if !v.isEmpty { fromFloat(v.baseAddress!, count: v.count, dtype: dtype, into: out.baseAddress!) }
            }
            n = values.count * dtype.size
        }
    }

    /// bfloat16 bits of `x`, rounding to nearest even and keeping NaN a NaN.
    @inline(__always)
    public static func bfloat16Bits(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        if x.isNaN { return UInt16(bits >> 16) | 0x40 }
        let rounding = ((bits >> 16) & 1) &+ 0x7FFF
        return UInt16((bits &+ rounding) >> 16)
    }

    /// True when every element of a float buffer is finite (no NaN, no infinity).
    public static func allFinite(_ source: UnsafeRawBufferPointer, dtype: DType) -> Bool {
        if source.count < dtype.size { return true }
        switch dtype {
        case .f16, .bf16:
            // Exponent all ones means Inf or NaN in both 16-bit formats.
            let mask: UInt16 = dtype == .f16 ? 0x7C00 : 0x7F80
            let s = source.bindMemory(to: UInt16.self)
            let count = s.count
            let m = SIMD16<UInt16>(repeating: mask)
            var i = 0
            var bad = SIMD16<UInt16>(repeating: 0)
            let base = UnsafeRawPointer(s.baseAddress!)
            while i + 16 <= count {
                let v = base.loadUnaligned(fromByteOffset: i * 2, as: SIMD16<UInt16>.self)
                let e = v & m
                bad |= SIMD16<UInt16>(repeating: 1) & (e .== m).bitMask16
                i += 16
            }
            if bad != SIMD16<UInt16>(repeating: 0) { return false }
            while i < count { if s[i] & mask == mask { return false }; i += 1 }
            return true
        case .f32:
            let s = source.bindMemory(to: UInt32.self)
            let mask: UInt32 = 0x7F80_0000
            let count = s.count
            let base = UnsafeRawPointer(s.baseAddress!)
            var i = 0
            var bad = SIMD8<UInt32>(repeating: 0)
            let m = SIMD8<UInt32>(repeating: mask)
            while i + 8 <= count {
                let v = base.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<UInt32>.self)
                bad |= SIMD8<UInt32>(repeating: 1) & (v & m .== m).bitMask8
                i += 8
            }
            if bad != SIMD8<UInt32>(repeating: 0) { return false }
            while i < count { if s[i] & mask == mask { return false }; i += 1 }
            return true
        case .i32, .i64:
            return true
        }
    }
}

extension SIMDMask where Storage == SIMD16<Int16> {
    @inline(__always) var bitMask16: SIMD16<UInt16> {
        SIMD16<UInt16>(truncatingIfNeeded: SIMD16<Int16>(repeating: 0).replacing(with: -1, where: self))
    }
}

extension SIMDMask where Storage == SIMD8<Int32> {
    @inline(__always) var bitMask8: SIMD8<UInt32> {
        SIMD8<UInt32>(truncatingIfNeeded: SIMD8<Int32>(repeating: 0).replacing(with: -1, where: self))
    }
}
