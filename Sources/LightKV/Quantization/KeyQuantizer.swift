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
                    let p = (h * groups + t) * dim
                    var d = 0
                    while d + 16 <= dim {
                        var lo = UnsafeRawPointer(head + rows[first] * dim + d).loadUnaligned(as: SIMD16<Float>.self)
                        var hi = lo
                        for r in (first + 1)..<max(first + 1, last) {
                            let v = UnsafeRawPointer(head + rows[r] * dim + d).loadUnaligned(as: SIMD16<Float>.self)
                            lo = pointwiseMin(lo, v); hi = pointwiseMax(hi, v)
                        }
                        UnsafeMutableRawPointer(mn.baseAddress! + p + d).storeBytes(of: lo, as: SIMD16<Float>.self)
                        UnsafeMutableRawPointer(mx.baseAddress! + p + d).storeBytes(of: hi, as: SIMD16<Float>.self)
                        d += 16
                    }
                    while d < dim {
                        var lo = head[rows[first] * dim + d], hi = lo
                        for r in first..<last { let v = head[rows[r] * dim + d]; lo = min(lo, v); hi = max(hi, v) }
                        mn[p + d] = lo; mx[p + d] = hi
                        d += 1
                    }
                }
            }
        }}
        return (mins, maxs)
    }

    static func codes(_ source: UnsafePointer<Float>, header: QuantizedBlockHeader, rows: [Int],
                      parameters f: QuantParameters.Fitted, into codes: UnsafeMutablePointer<UInt8>) {
        let dim = header.dim, g = header.group, n = rows.count, groups = tokenGroups(header)
        let levels = Float(header.levels), lv = SIMD16<Float>(repeating: levels)
        f.zero.withUnsafeBufferPointer { zb in f.inverse.withUnsafeBufferPointer { ib in
            let zero = zb.baseAddress!, inverse = ib.baseAddress!
            for h in 0..<header.heads {
                let head = source + h * header.count * dim
                for r in 0..<n {
                    let x = head + rows[r] * dim
                    let p = (h * groups + r / g) * dim
                    let out = codes + (h * n + r) * dim
                    var d = 0
                    while d + 16 <= dim {
                        let v = UnsafeRawPointer(x + d).loadUnaligned(as: SIMD16<Float>.self)
                        let z = UnsafeRawPointer(zero + p + d).loadUnaligned(as: SIMD16<Float>.self)
                        let i = UnsafeRawPointer(inverse + p + d).loadUnaligned(as: SIMD16<Float>.self)
                        UnsafeMutableRawPointer(out + d).storeBytes(of: CodeMath.codes(v, zero: z, inverse: i, levels: lv), as: SIMD16<UInt8>.self)
                        d += 16
                    }
                    while d < dim {
                        out[d] = CodeMath.code(x[d], zero: zero[p + d], inverse: inverse[p + d], levels: levels)
                        d += 1
                    }
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
