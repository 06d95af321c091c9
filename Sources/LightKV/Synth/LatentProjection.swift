/// The hot loop of synthesis: `out += x · W` for one token, `W` being `[latentDim, headDim]`.
///
/// Runs ~600M times 8 lanes for a llava snapshot, so it is written once here over raw pointers
/// with `SIMD8` accumulation along the head dimension (W's rows are contiguous).
enum LatentProjection {
    @inline(__always)
    static func accumulate(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                           latentDim: Int, headDim: Int) {
        let vectorEnd = headDim & ~7
        var d = 0
        while d < vectorEnd {
            var acc = UnsafeRawPointer(out + d).loadUnaligned(as: SIMD8<Float>.self)
            var row = w + d
            for i in 0..<latentDim {
                let wv = UnsafeRawPointer(row).loadUnaligned(as: SIMD8<Float>.self)
                acc.addProduct(SIMD8(repeating: x[i]), wv)
                row += headDim
            }
            UnsafeMutableRawPointer(out + d).storeBytes(of: acc, as: SIMD8<Float>.self)
            d += 8
        }
        while d < headDim {
            var acc = out[d]
            for i in 0..<latentDim { acc += x[i] * w[i * headDim + d] }
            out[d] = acc
            d += 1
        }
    }
}
