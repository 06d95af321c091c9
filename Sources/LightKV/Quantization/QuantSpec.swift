/// How kept entries are quantized before packing.
public enum QuantSpec: Sendable, Equatable {
    /// Stored at full precision: the input's own dtype for untouched entries, F16 for merged ones.
    case none

    /// Parses one `+`-separated part of a policy name; nil when the part is not a quantization.
    public init?(token: String) throws(PolicyError) {
        switch token {
        case "f16": self = .none
        default: return nil
        }
    }

    public var name: String {
        switch self {
        case .none: "f16"
        }
    }
}

extension QuantSpec {
    /// Encodes a reduced layer's keys and values for packing.
    public func encode(_ layer: KVLayer, context: LayerContext) -> (keys: EncodedBlock, values: EncodedBlock) {
        switch self {
        case .none:
            return (BlockCodec.encode(layer.keys, dtype: .f16), BlockCodec.encode(layer.values, dtype: .f16))
        }
    }
}
