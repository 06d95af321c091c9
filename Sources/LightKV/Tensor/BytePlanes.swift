/// Byte-plane layout: all first bytes of the elements, then all second bytes, and so on.
///
/// zstd finds far more redundancy in the high bytes of fp16 once they stand together
/// (../shared/PLATFORM.md: ratio 1.09 -> 1.47 on smooth data), and the transform is a
/// memory-speed pass.
public enum BytePlanes {
    /// Splits `count` elements of `width` bytes from `source` into planes at `destination`.
    /// `planeStride` (default `count`) is the distance between planes: a block split piece
    /// by piece writes each piece at its offset with the whole block's count as the stride.
    public static func split(_ source: UnsafeRawPointer, count: Int, width: Int, into destination: UnsafeMutableRawPointer,
                             planeStride: Int? = nil) {
        let d = destination.assumingMemoryBound(to: UInt8.self)
        let count = count, stride = planeStride ?? count
        switch width {
        case 2:
            let s = source.assumingMemoryBound(to: UInt16.self)
            var i = 0
            while i + 16 <= count {
                let v = UnsafeRawPointer(s + i).loadUnaligned(as: SIMD16<UInt16>.self)
                UnsafeMutableRawPointer(d + i).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v), as: SIMD16<UInt8>.self)
                UnsafeMutableRawPointer(d + stride + i).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v &>> 8), as: SIMD16<UInt8>.self)
                i += 16
            }
            while i < count { d[i] = UInt8(truncatingIfNeeded: s[i]); d[stride + i] = UInt8(s[i] >> 8); i += 1 }
        default:
            let s = source.assumingMemoryBound(to: UInt8.self)
            for i in 0..<count { for b in 0..<width { d[b * stride + i] = s[i * width + b] } }
        }
    }

    /// Joins planes written by `split` back into elements.
    public static func join(_ source: UnsafeRawPointer, count: Int, width: Int, into destination: UnsafeMutableRawPointer) {
        let s = source.assumingMemoryBound(to: UInt8.self)
        switch width {
        case 2:
            let d = destination.assumingMemoryBound(to: UInt16.self)
            var i = 0
            while i + 16 <= count {
                let lo = UnsafeRawPointer(s + i).loadUnaligned(as: SIMD16<UInt8>.self)
                let hi = UnsafeRawPointer(s + count + i).loadUnaligned(as: SIMD16<UInt8>.self)
                let v = SIMD16<UInt16>(truncatingIfNeeded: lo) | (SIMD16<UInt16>(truncatingIfNeeded: hi) &<< 8)
                UnsafeMutableRawPointer(d + i).storeBytes(of: v, as: SIMD16<UInt16>.self)
                i += 16
            }
            while i < count { d[i] = UInt16(s[i]) | UInt16(s[count + i]) << 8; i += 1 }
        default:
            let d = destination.assumingMemoryBound(to: UInt8.self)
            for i in 0..<count { for b in 0..<width { d[i * width + b] = s[b * count + i] } }
        }
    }
}
