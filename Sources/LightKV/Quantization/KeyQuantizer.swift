/// Keys: per channel, G consecutive (quantized) tokens of one channel share scale and zero.
///
/// Keys carry outlier channels (KIVI, 2024): a few channels are far larger than the rest, so
/// a scale per token would spend its range on them and flatten every other channel. Grouping
/// along tokens gives each channel its own range. Parameters are ordered
/// `[head][token group][channel]`, so the decoder loads sixteen channels' scales at once.
enum KeyQuantizer: GroupQuantizer {
    static func tokenGroups(_ header: QuantizedBlockHeader) -> Int { (header.quantized + header.group - 1) / header.group }

    static func parameterCount(_ header: QuantizedBlockHeader) -> Int { header.heads * tokenGroups(header) * header.dim }

    static func ranges(_ source: UnsafePointer<Float>, header: QuantizedBlockHeader, rows: [Int], head h: Int,
                       mins: UnsafeMutablePointer<Float>, maxs: UnsafeMutablePointer<Float>) {
        let dim = header.dim, g = header.group, n = rows.count
        let head = source + h * header.count * dim
        for t in 0..<tokenGroups(header) {
            let first = t * g, last = min(first + g, n)
            let lo = mins + t * dim, hi = maxs + t * dim
            let x0 = head + rows[first] * dim
            lo.update(from: x0, count: dim); hi.update(from: x0, count: dim)
            for r in (first + 1)..<max(first + 1, last) {
                // Plain select loops: LLVM turns them into vminps/vmaxps, which the
                // NaN-aware stdlib pointwiseMin does not.
                let x = head + rows[r] * dim
                for d in 0..<dim { let v = x[d]; lo[d] = v < lo[d] ? v : lo[d]; hi[d] = v > hi[d] ? v : hi[d] }
            }
        }
    }

    static func codes(_ source: UnsafePointer<Float>, header: QuantizedBlockHeader, rows: [Int], head h: Int,
                      zero: UnsafePointer<Float>, inverse: UnsafePointer<Float>, into codes: UnsafeMutablePointer<UInt8>) {
        let dim = header.dim, g = header.group
        let levels = Float(header.levels)
        let head = source + h * header.count * dim
        for r in rows.indices {
            let x = head + rows[r] * dim
            let z = zero + (r / g) * dim, inv = inverse + (r / g) * dim
            let out = codes + r * dim
            for d in 0..<dim { out[d] = CodeMath.code(x[d], zero: z[d], inverse: inv[d], levels: levels) }
        }
    }

    @inline(__always)
    static func dequantizeRow<O: DequantizedOutput>(
        _ codes: UnsafePointer<UInt8>, header: QuantizedBlockHeader, head h: Int, row r: Int,
        scale: UnsafePointer<Float>, zero: UnsafePointer<Float>, output: UnsafeMutableRawPointer, at index: Int, as: O.Type
    ) {
        let dim = header.dim
        let p = (h * tokenGroups(header) + r / header.group) * dim
        var d = 0
        while d + 16 <= dim {
            let c = CodeMath.floats(UnsafeRawPointer(codes + d).loadUnaligned(as: SIMD16<UInt8>.self))
            let s = UnsafeRawPointer(scale + p + d).loadUnaligned(as: SIMD16<Float>.self)
            let z = UnsafeRawPointer(zero + p + d).loadUnaligned(as: SIMD16<Float>.self)
            O.store(c * s + z, to: output, at: index + d)
            d += 16
        }
        while d < dim {
            O.store(CodeMath.value(codes[d], scale: scale[p + d], zero: zero[p + d]), to: output, at: index + d)
            d += 1
        }
    }
}
