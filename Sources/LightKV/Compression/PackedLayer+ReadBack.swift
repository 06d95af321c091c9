extension PackedLayer {
    /// Decodes each quantized block exactly as a fetch will and checks that every value is
    /// finite.
    ///
    /// An ingest is durable only once what it wrote is proven readable: a block that cannot
    /// be decoded, or decodes to Inf or NaN, must be refused while the input still exists,
    /// not discovered by the first fetch. Raw blocks (F16, BF16, F32 byte planes) hold
    /// values already known finite in a dtype chosen to hold them (the input's bytes, or
    /// `UnquantizedStorage`), so only quantized ones are decoded; to F16, the narrowest
    /// output, one block at a time, so the check costs one block of memory.
    public func checkReadsBack(kvHeads: Int, headDim: Int, vHeadDim: Int) throws(ReadBackError) {
        for (part, block, dim) in [("keys", keys, headDim), ("values", values, vHeadDim)]
        where QuantizedBlock.bits(scheme: block.encoding.scheme) != nil {
            let shape = BlockShape(heads: kvHeads, count: count, dim: dim)
            var decoded = [UInt16](repeating: 0, count: shape.elements)
            do {
                try block.bytes.withUnsafeBytes { b in
                    try decoded.withUnsafeMutableBytes { d in
                        guard let base = d.baseAddress else { return }
                        try BlockCodec.decode(b, encoding: block.encoding, elements: shape.elements, shape: shape, to: .f16, into: base)
                    }
                }
            } catch {
                throw ReadBackError(part: part, problem: "\(error)")
            }
            let finite = decoded.withUnsafeBytes { Conversion.allFinite($0, dtype: .f16) }
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
