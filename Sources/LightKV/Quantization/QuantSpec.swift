/// How kept entries are quantized before packing.
///
/// Policy spellings: `f16` (`.none`), or `int<bits>[g<group>][s<sinks>][m<size>][t<0|1>]`
/// (`IntegerQuantization`), e.g. `int8`, `int4g64`, `int2g32s0`.
public enum QuantSpec: Sendable, Equatable {
    /// Not quantized: stored in the input's 16-bit dtype (`UnquantizedStorage`), so untouched
    /// entries stay bit-exact and merged ones are rounded once.
    case none
    /// Integer codes per group with F16 scale and zero point; keys per channel, values per token.
    case integer(IntegerQuantization)

    /// Parses one `+`-separated part of a policy name; nil when the part is not a quantization.
    public init?(token: String) throws(PolicyError) {
        if token == "f16" { self = .none; return }
        guard let q = try IntegerQuantization(token: token) else { return nil }
        self = .integer(q)
    }

    public var name: String {
        switch self {
        case .none: "f16"
        case .integer(let q): q.name
        }
    }
}

extension QuantSpec {
    /// Encodes a reduced layer's keys and values for packing.
    public func encode(_ layer: KVLayer, context: LayerContext) -> (keys: EncodedBlock, values: EncodedBlock) {
        switch self {
        case .none:
            let dtype = UnquantizedStorage.dtype(input: context.inputDType, keys: layer.keys, values: layer.values)
            return (BlockCodec.encode(layer.keys, dtype: dtype), BlockCodec.encode(layer.values, dtype: dtype))
        case .integer(let q):
            let kept = q.keep.keptEntries(layer: layer, context: context)
            func block(_ x: [Float], dim: Int, axis: QuantAxis, rotate: Bool) -> EncodedBlock {
                // Quantized blocks hold scales, zero points and kept entries in F16; a block
                // beyond half its range is stored unquantized instead of clamped or overflowed.
                guard UnquantizedStorage.fitsQuantization(x) else {
                    return BlockCodec.encode(x, dtype: UnquantizedStorage.dtype(input: context.inputDType, keys: x, values: []))
                }
                // A rotated row's entries reach up to √dim times the row's largest; such a
                // block is quantized unrotated rather than pushed past F16.
                let rotated = rotate && HadamardRotation.applies(to: dim)
                    && UnquantizedStorage.fitsQuantization(x, limit: UnquantizedStorage.quantizableMax / Float(dim).squareRoot())
                return QuantizedBlock.encode(x, shape: BlockShape(heads: layer.kvHeads, count: layer.count, dim: dim),
                                             kept: kept, settings: q, axis: axis, rotated: rotated)
            }
            return (block(layer.keys, dim: layer.headDim, axis: .channel, rotate: q.rotateKeys),
                    block(layer.values, dim: layer.vHeadDim, axis: .token, rotate: false))
        }
    }
}
