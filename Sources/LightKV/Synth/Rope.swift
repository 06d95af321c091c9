import Foundation

/// Rotary position embedding in the Hugging Face `rotate_half` convention.
///
/// Channel `i` and `i + headDim/2` form a pair rotated by `position * theta^(-2i/headDim)`:
/// `x[i]' = x[i]·cos − x[i+h]·sin`, `x[i+h]' = x[i+h]·cos + x[i]·sin`. Keys in a kvsnap file
/// carry RoPE already, so synthetic keys and queries are rotated the same way.
public struct Rope: Sendable {
    public let headDim: Int
    public let theta: Float
    /// `[positions, headDim/2]` cosines and sines.
    private let cosines: [Float]
    private let sines: [Float]
    public let positions: Int

    /// Tables for positions `0..<positions`.
    public init(headDim: Int, theta: Float, positions: Int) {
        self.headDim = headDim; self.theta = theta; self.positions = positions
        let half = headDim / 2
        var c = [Float](repeating: 1, count: positions * half)
        var s = [Float](repeating: 0, count: positions * half)
        for i in 0..<half {
            let inverse = pow(Double(theta), -2 * Double(i) / Double(headDim))
            for p in 0..<positions {
                let angle = Double(p) * inverse
                c[p * half + i] = Float(cos(angle)); s[p * half + i] = Float(sin(angle))
            }
        }
        cosines = c; sines = s
    }

    /// Rotates the `headDim` floats at `x` to `position` in place.
    @inline(__always)
    public func apply(_ x: UnsafeMutablePointer<Float>, position: Int) {
        let half = headDim / 2
        cosines.withUnsafeBufferPointer { cb in
            sines.withUnsafeBufferPointer { sb in
                let c = cb.baseAddress! + position * half, s = sb.baseAddress! + position * half
                for i in 0..<half {
                    let a = x[i], b = x[i + half]
                    x[i] = a * c[i] - b * s[i]
                    x[i + half] = b * c[i] + a * s[i]
                }
            }
        }
    }
}
