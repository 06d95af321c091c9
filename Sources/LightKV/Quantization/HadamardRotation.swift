/// The normalised Walsh–Hadamard transform of a row, in place: an orthogonal rotation that is
/// its own inverse, so `apply(apply(x)) == x` within float rounding.
///
/// Rotating each key row before quantization spreads an outlier channel (hundreds of times the
/// median magnitude) over every channel of the row (QuaRot, SpinQuant): no channel's group
/// range is then dominated by it, and the decoder rotates the dequantized row back. It needs a
/// power-of-two width (every head_dim in use: 64, 128, 256).
public enum HadamardRotation {
    public static func applies(to dim: Int) -> Bool { dim >= 2 && dim & (dim - 1) == 0 }

    /// Rotates the `n` floats at `x` (`n` a power of two).
    public static func apply(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        precondition(applies(to: n), "the Hadamard rotation needs a power-of-two width, not \(n)")
        var half = 1
        while half < n {
            var start = 0
            while start < n {
                for i in start..<(start + half) {
                    let a = x[i], b = x[i + half]
                    x[i] = a + b
                    x[i + half] = a - b
                }
                start += 2 * half
            }
            half *= 2
        }
        VectorKernels.scale(x, 1 / Float(n).squareRoot(), n)
    }
}
