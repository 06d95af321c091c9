/// Packs sub-byte codes: int4 two to a byte, int2 four to a byte, little end first.
///
/// Code `i` of a row sits in byte `i·bits/8` at bit `(i·bits) mod 8`, so for int4 the even
/// channel is the low nibble. Each row starts on a byte boundary and its unused high bits are
/// zero, so odd lengths round-trip exactly and every row decodes on its own. The SIMD paths
/// widen bytes to 16/32-bit lanes instead of shuffling: packing 2 codes is
/// `(u16 & 0xF) | (u16 >> 8) << 4` on little-endian pairs.
enum CodePacking {
    /// Bytes a row of `count` codes of `bits` takes.
    @inline(__always)
    static func rowBytes(count: Int, bits: Int) -> Int { (count * bits + 7) / 8 }

    /// Packs `count` codes (each `< 2^bits`) from `source` into `rowBytes` bytes at `destination`.
    static func pack(_ source: UnsafePointer<UInt8>, count: Int, bits: Int, into destination: UnsafeMutablePointer<UInt8>) {
        switch bits {
        case 8:
            destination.update(from: source, count: count)
        case 4:
            var i = 0
            while i + 32 <= count {
                let v = UnsafeRawPointer(source + i).loadUnaligned(as: SIMD16<UInt16>.self)
                let b = (v & 0x0F) | ((v &>> 8) &<< 4)
                UnsafeMutableRawPointer(destination + i / 2).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: b), as: SIMD16<UInt8>.self)
                i += 32
            }
            while i < count {
                let hi = i + 1 < count ? source[i + 1] : 0
                destination[i / 2] = (source[i] & 0x0F) | (hi << 4)
                i += 2
            }
        default:
            var i = 0
            while i + 64 <= count {
                let v = UnsafeRawPointer(source + i).loadUnaligned(as: SIMD16<UInt32>.self)
                let b = (v & 0x3) | ((v &>> 8) & 0x3) &<< 2 | ((v &>> 16) & 0x3) &<< 4 | (v &>> 24) &<< 6
                UnsafeMutableRawPointer(destination + i / 4).storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: b), as: SIMD16<UInt8>.self)
                i += 64
            }
            while i < count {
                var byte: UInt8 = 0
                for k in 0..<min(4, count - i) { byte |= (source[i + k] & 0x3) << (2 * k) }
                destination[i / 4] = byte
                i += 4
            }
        }
    }

    /// Unpacks `count` codes from a packed row into one byte each.
    static func unpack(_ source: UnsafePointer<UInt8>, count: Int, bits: Int, into destination: UnsafeMutablePointer<UInt8>) {
        switch bits {
        case 8:
            destination.update(from: source, count: count)
        case 4:
            var i = 0
            while i + 32 <= count {
                let b = SIMD16<UInt16>(truncatingIfNeeded: UnsafeRawPointer(source + i / 2).loadUnaligned(as: SIMD16<UInt8>.self))
                let v = (b & 0x0F) | ((b &>> 4) &<< 8)
                UnsafeMutableRawPointer(destination + i).storeBytes(of: v, as: SIMD16<UInt16>.self)
                i += 32
            }
            while i < count {
                let byte = source[i / 2]
                destination[i] = byte & 0x0F
                if i + 1 < count { destination[i + 1] = byte >> 4 }
                i += 2
            }
        default:
            var i = 0
            while i + 64 <= count {
                let b = SIMD16<UInt32>(truncatingIfNeeded: UnsafeRawPointer(source + i / 4).loadUnaligned(as: SIMD16<UInt8>.self))
                let v = (b & 0x3) | ((b &>> 2) & 0x3) &<< 8 | ((b &>> 4) & 0x3) &<< 16 | (b &>> 6) &<< 24
                UnsafeMutableRawPointer(destination + i).storeBytes(of: v, as: SIMD16<UInt32>.self)
                i += 64
            }
            while i < count {
                let byte = source[i / 4]
                for k in 0..<min(4, count - i) { destination[i + k] = (byte >> (2 * k)) & 0x3 }
                i += 4
            }
        }
    }
}
