extension PackedLayer {
    /// Decodes both blocks exactly as a fetch will and checks that every value is finite.
    ///
    /// An ingest is durable only once what it wrote is proven readable: a block that cannot
    /// be decoded, or decodes to Inf or NaN, must be refused while the input still exists,
    /// not discovered by the first fetch. Decoding to F32 checks the stored numbers
    /// themselves; what a narrower output dtype can hold is the fetch's concern.
    public func checkReadsBack(kvHeads: Int, headDim: Int, vHeadDim: Int) throws(ReadBackError) {
        for (part, block, dim) in [("keys", keys, headDim), ("values", values, vHeadDim)] {
            let shape = BlockShape(heads: kvHeads, count: count, dim: dim)
            var decoded = [Float](repeating: 0, count: shape.elements)
            do {
                try block.bytes.withUnsafeBytes { b in
                    try decoded.withUnsafeMutableBytes { d in
                        guard let base = d.baseAddress else { return }
                        try BlockCodec.decode(b, encoding: block.encoding, elements: shape.elements, shape: shape, to: .f32, into: base)
                    }
                }
            } catch {
                throw ReadBackError(part: part, problem: "\(error)")
            }
            let finite = decoded.withUnsafeBytes { Conversion.allFinite($0, dtype: .f32) }
            guard finite else { throw ReadBackError(part: part, problem: "\(block.encoding.scheme) block decodes to Inf or NaN") }
        }
    }
}

/// An encoded layer that would not read back as written.
public struct ReadBackError: Error, CustomStringConvertible {
    /// `keys` or `values`.
    public var part: String
    public var problem: String
    public var description: String { "\(part) do not read back: \(problem)" }
}
