/// How close approximate attention outputs are to reference ones, row by row.
public struct OutputAgreement: Sendable, Equatable, Codable {
    /// Mean cosine similarity of output rows (1 is identical direction).
    public var cosine: Double
    /// Mean `‖o' − o‖ / ‖o‖` of output rows (0 is identical).
    public var relativeError: Double

    public init(cosine: Double, relativeError: Double) {
        self.cosine = cosine; self.relativeError = relativeError
    }

    /// Compares `rows` rows of `dim` floats; a zero reference row counts as error 0 when the
    /// approximation is zero too and 1 otherwise, and its cosine as 1 or 0 likewise.
    public init(reference: [Float], approximate: [Float], rows: Int, dim: Int) {
        precondition(reference.count == rows * dim && approximate.count == rows * dim, "outputs do not match [rows, dim]")
        var cosSum = 0.0, errSum = 0.0
        reference.withUnsafeBufferPointer { r in
            approximate.withUnsafeBufferPointer { a in
                for i in 0..<rows {
                    let x = r.baseAddress! + i * dim, y = a.baseAddress! + i * dim
                    let xx = Double(VectorKernels.dot(x, x, dim)), yy = Double(VectorKernels.dot(y, y, dim))
                    let xy = Double(VectorKernels.dot(x, y, dim))
                    let diff = max(0, xx + yy - 2 * xy)
                    if xx == 0 {
                        errSum += yy == 0 ? 0 : 1
                        cosSum += yy == 0 ? 1 : 0
                    } else {
                        // ‖y − x‖² from the three dots loses precision when y ≈ x; recompute exactly then.
                        let d2 = diff < 1e-6 * xx ? Self.squaredDistance(x, y, dim) : diff
                        errSum += (d2 / xx).squareRoot()
                        cosSum += yy == 0 ? 0 : xy / (xx * yy).squareRoot()
                    }
                }
            }
        }
        let n = Double(max(rows, 1))
        self.init(cosine: rows == 0 ? 1 : cosSum / n, relativeError: errSum / n)
    }

    private static func squaredDistance(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Double {
        var s = 0.0
        for i in 0..<n { let e = Double(y[i]) - Double(x[i]); s += e * e }
        return s
    }
}
