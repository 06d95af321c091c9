/// Row-delta coding of packed quantization codes (CacheGen's observation carried to our
/// blocks: neighbouring tokens hold similar codes, so each row minus the one before it is
/// mostly small numbers, which zstd's entropy stage stores in fewer bits than raw codes).
///
/// Codes are `bits` wide lanes packed in bytes; differences are taken lane by lane modulo
/// `2^bits`, so the transform is exact and never widens a code. Within one head, row `r`
/// becomes `row[r] − row[r−1]`; the first row stays as it is.
enum CodeDelta {
    /// Mask of the even lanes of a byte (lanes of `bits` bits; the odd lanes are its complement).
    private static func evenLanes(_ bits: Int) -> UInt8 {
        switch bits {
        case 8: 0xFF
        case 4: 0x0F
        default: 0x33
        }
    }

    /// Replaces rows `1..<rows` (each `rowBytes` long) by their difference from the row before.
    static func encode(_ codes: UnsafeMutablePointer<UInt8>, rows: Int, rowBytes: Int, bits: Int) {
        guard rows > 1 else { return }
        let m = evenLanes(bits)
        // From the last row back, so every subtraction reads an original row: 16 bytes a step
        // where rows are at least 16 bytes apart (a step then reads only bytes below the ones
        // it writes, none of them written yet), then byte by byte down to the second row.
        var end = rows * rowBytes
        if rowBytes >= 16 {
            let even = SIMD16<UInt8>(repeating: m), odd = ~even
            while end - 16 >= rowBytes {
                let i = end - 16
                let a = UnsafeRawPointer(codes + i).loadUnaligned(as: SIMD16<UInt8>.self)
                let b = UnsafeRawPointer(codes + i - rowBytes).loadUnaligned(as: SIMD16<UInt8>.self)
                let low = ((a | odd) &- (b & even)) & even
                let high = ((a | even) &- (b & odd)) & odd
                UnsafeMutableRawPointer(codes + i).storeBytes(of: low | high, as: SIMD16<UInt8>.self)
                end = i
            }
        }
        var i = end - 1
        while i >= rowBytes {
            codes[i] = subtract(codes[i], codes[i - rowBytes], mask: m)
            i -= 1
        }
    }

    /// Undoes `encode` in place.
    static func decode(_ codes: UnsafeMutablePointer<UInt8>, rows: Int, rowBytes: Int, bits: Int) {
        guard rows > 1 else { return }
        let m = SIMD16<UInt8>(repeating: evenLanes(bits)), odd = ~m
        let total = rows * rowBytes
        var i = rowBytes
        // Rows are at least 16 bytes apart when this runs vectorised, so a lane never reads
        // a byte written in the same step.
        if rowBytes >= 16 {
            while i + 16 <= total {
                let d = UnsafeRawPointer(codes + i).loadUnaligned(as: SIMD16<UInt8>.self)
                let p = UnsafeRawPointer(codes + i - rowBytes).loadUnaligned(as: SIMD16<UInt8>.self)
                let even = ((d & m) &+ (p & m)) & m
                let high = ((d & odd) &+ (p & odd)) & odd
                UnsafeMutableRawPointer(codes + i).storeBytes(of: even | high, as: SIMD16<UInt8>.self)
                i += 16
            }
        }
        let mask = evenLanes(bits)
        while i < total {
            codes[i] = add(codes[i], codes[i - rowBytes], mask: mask)
            i += 1
        }
    }

    /// Lane-wise `a − b` modulo 2^bits; the other lanes' bits, set to one, absorb the borrows.
    @inline(__always)
    static func subtract(_ a: UInt8, _ b: UInt8, mask m: UInt8) -> UInt8 {
        let even = ((a | ~m) &- (b & m)) & m
        let odd = ((a | m) &- (b & ~m)) & ~m
        return even | odd
    }

    /// Lane-wise `a + b` modulo 2^bits; a carry lands in a masked-off bit and is dropped.
    @inline(__always)
    static func add(_ a: UInt8, _ b: UInt8, mask m: UInt8) -> UInt8 {
        ((a & m) &+ (b & m)) & m | ((a & ~m) &+ (b & ~m)) & ~m
    }
}
