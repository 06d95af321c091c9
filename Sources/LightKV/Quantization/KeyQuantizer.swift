/// Keys: per channel, G consecutive (quantized) tokens of one channel share scale and zero.
///
/// Keys carry outlier channels (KIVI, 2024): a few channels are far larger than the rest, so
/// a scale per token would spend its range on them and flatten every other channel. Grouping
/// along tokens gives each channel its own range. Parameters are ordered
/// `[head][token group][channel]`, so the decoder loads sixteen channels' scales at once.
enum KeyQuantizer: GroupQuantizer {
    static func tokenGroups(_ header: QuantizedBlockHeader) -> Int { (header.quantized + header.group - 1) / header.group }

    static func parameterCount(_ header: QuantizedBlockHeader) -> Int { header.heads * tokenGroups(header) * header.dim }

    static func ranges(_ source: UnsafePointer<Float>, header: QuantizedBlockHeader, rows: [Int]) -> (mins: [Float], maxs: [Float]) {
        let dim = header.dim, g = header.group, n = rows.count, groups = tokenGroups(header)
        let total = parameterCount(header)
        var mins = [Float](repeating: 0, count: total), maxs = [Float](repeating: 0, count: total)
        mins.withUnsafeMutableBufferPointer { mn in maxs.withUnsafeMutableBufferPointer { mx in
            for h in 0..<header.heads {
                let head = source + h * header.count * dim
                for t in 0..<groups {
                    let first = t * g, last = min(first + g, n)
                    let lo = mn.baseAddress! + (h * groups + t) * dim, hi = mx.baseAddress! + (h * groups + t) * dim
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
        }}
        return (mins, maxs)
    }

    static func codes(_ source: UnsafePointer<Float>, header: QuantizedBlockHeader, rows: [Int],
                      parameters f: QuantParameters.Fitted, into codes: UnsafeMutablePointer<UInt8>) {
        let dim = header.dim, g = header.group, n = rows.count, groups = tokenGroups(header)
        let levels = Float(header.levels)
        f.zero.withUnsafeBufferPointer { zb in f.inverse.withUnsafeBufferPointer { ib in
            for h in 0..<header.heads {
                let head = source + h * header.count * dim
                for r in 0..<n {
                    let x = head + rows[r] * dim
                    let p = (h * groups + r / g) * dim
                    let zero = zb.baseAddress! + p, inverse = ib.baseAddress! + p
                    let out = codes + (h * n + r) * dim
                    for d in 0..<dim { out[d] = CodeMath.code(x[d], zero: zero[d], inverse: inverse[d], levels: levels) }
                }
            }
        }}
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
