/// Values: per token, G consecutive channels of one token share scale and zero.
///
/// Value states have no outlier channels but vary in magnitude from token to token, and the
/// attention output mixes whole value rows, so the error is best bounded per token (KIVI).
/// Parameters are ordered `[head][entry][channel group]`; the last group of a row is ragged
/// when `dim` is not a multiple of G.
enum ValueQuantizer: GroupQuantizer {
    static func channelGroups(_ header: QuantizedBlockHeader) -> Int { (header.dim + header.group - 1) / header.group }

    static func parameterCount(_ header: QuantizedBlockHeader) -> Int { header.heads * header.quantized * channelGroups(header) }

    static func ranges(_ source: UnsafePointer<Float>, header: QuantizedBlockHeader, rows: [Int], head h: Int,
                       mins: UnsafeMutablePointer<Float>, maxs: UnsafeMutablePointer<Float>) {
        let dim = header.dim, g = header.group, groups = channelGroups(header)
        for r in rows.indices {
            let x = source + (h * header.count + rows[r]) * dim
            for c in 0..<groups {
                // Minimum and maximum as order-preserving integers: integer min/max
                // reductions vectorize, float ones (NaN semantics) do not.
                var lo = Int32.max, hi = Int32.min
                for d in (c * g)..<min(c * g + g, dim) {
                    let k = CodeMath.orderedBits(x[d])
                    lo = min(lo, k); hi = max(hi, k)
                }
                mins[r * groups + c] = CodeMath.float(orderedBits: lo)
                maxs[r * groups + c] = CodeMath.float(orderedBits: hi)
            }
        }
    }

    static func codes(_ source: UnsafePointer<Float>, header: QuantizedBlockHeader, rows: [Int], head h: Int,
                      zero: UnsafePointer<Float>, inverse: UnsafePointer<Float>, into codes: UnsafeMutablePointer<UInt8>) {
        let dim = header.dim, g = header.group, groups = channelGroups(header)
        let levels = Float(header.levels)
        for r in rows.indices {
            let x = source + (h * header.count + rows[r]) * dim
            let out = codes + r * dim
            for c in 0..<groups {
                let z = zero[r * groups + c], inv = inverse[r * groups + c]
                for d in (c * g)..<min(c * g + g, dim) { out[d] = CodeMath.code(x[d], zero: z, inverse: inv, levels: levels) }
            }
        }
    }

    @inline(__always)
    static func dequantizeRow<O: DequantizedOutput>(
        _ codes: UnsafePointer<UInt8>, header: QuantizedBlockHeader, head h: Int, row r: Int,
        scale: UnsafePointer<Float>, zero: UnsafePointer<Float>, output: UnsafeMutableRawPointer, at index: Int, as: O.Type
    ) {
        let dim = header.dim, g = header.group, groups = channelGroups(header)
        let p = (h * header.quantized + r) * groups
        for c in 0..<groups {
            let s = scale[p + c], z = zero[p + c]
            let vs = SIMD16<Float>(repeating: s), vz = SIMD16<Float>(repeating: z)
            let last = min(c * g + g, dim)
            var d = c * g
            while d + 16 <= last {
                let f = CodeMath.floats(UnsafeRawPointer(codes + d).loadUnaligned(as: SIMD16<UInt8>.self))
                O.store(f * vs + vz, to: output, at: index + d)
                d += 16
            }
            while d < last { O.store(CodeMath.value(codes[d], scale: s, zero: z), to: output, at: index + d); d += 1 }
        }
    }
}
