/// How one key or value block of a pack section is stored (docs/FORMAT.md).
///
/// `f16`, `bf16`, `f32`: the elements in that dtype, split into byte planes.
/// Quantized schemes are described by `Quantization/`.
public struct BlockEncoding: Codable, Equatable, Sendable {
    public var scheme: String
    /// Quantization group size, for quantized schemes.
    public var group: Int?
    /// `channel` (a scale per channel per group of tokens) or `token` (per token per group of channels).
    public var axis: String?

    public init(scheme: String, group: Int? = nil, axis: String? = nil) {
        self.scheme = scheme; self.group = group; self.axis = axis
    }

    public static func raw(_ dtype: DType) -> BlockEncoding { BlockEncoding(scheme: dtype.rawValue.lowercased()) }

    /// The dtype of a raw (unquantized) block.
    public var rawDType: DType? { DType(userName: scheme) }
}

/// An encoded key or value block and how to read it back.
public struct EncodedBlock: Sendable {
    public var encoding: BlockEncoding
    public var bytes: [UInt8]
    public init(encoding: BlockEncoding, bytes: [UInt8]) { self.encoding = encoding; self.bytes = bytes }
}

/// A block that cannot be decoded.
public enum BlockError: Error, CustomStringConvertible, Equatable {
    case unknownScheme(String)
    case sizeMismatch(scheme: String, expected: Int, actual: Int)
    /// The block ends inside `section`.
    case truncated(scheme: String, section: String, needed: Int, actual: Int)
    /// A header field disagrees with the format or with the pack index.
    case badHeader(scheme: String, field: String, value: Int, expected: String)
    /// Kept-entry index `slot` is out of range or not ascending.
    case badKeptIndex(scheme: String, slot: Int, value: Int, count: Int)
    /// An F16 section holds Inf or NaN, which no encoder writes.
    case nonFinite(scheme: String, section: String)
    /// The scheme cannot decode to this dtype.
    case unsupportedOutput(scheme: String, dtype: String)

    public var description: String {
        switch self {
        case .unknownScheme(let s): "block encoding \"\(s)\" is not known"
        case .sizeMismatch(let s, let e, let a): "\(s) block holds \(a) bytes, expected \(e)"
        case .truncated(let s, let section, let n, let a): "\(s) block is \(a) bytes long, too short for its \(section) (\(n) bytes)"
        case .badHeader(let s, let f, let v, let e): "\(s) block header field \(f) is \(v), expected \(e)"
        case .badKeptIndex(let s, let i, let v, let c): "\(s) block kept index \(i) is \(v): indices must ascend and stay below count \(c)"
        case .nonFinite(let s, let section): "\(s) block \(section) hold Inf or NaN"
        case .unsupportedOutput(let s, let d): "\(s) block cannot be decoded to \(d)"
        }
    }
}

/// Encodes and decodes key/value blocks of shape `[heads, count, dim]`.
public enum BlockCodec {
    /// Raw bytes of one dtype, rearranged into byte planes.
    public static func encodeRaw(_ bytes: UnsafeRawBufferPointer, dtype: DType) -> EncodedBlock {
        let count = bytes.count / dtype.size
        let out = [UInt8](unsafeUninitializedCapacity: bytes.count) { buf, n in
            if count > 0 { BytePlanes.split(bytes.baseAddress!, count: count, width: dtype.size, into: buf.baseAddress!) }
            n = bytes.count
        }
        return EncodedBlock(encoding: .raw(dtype), bytes: out)
    }

    /// Floats stored as `dtype` in byte planes.
    public static func encode(_ values: [Float], dtype: DType) -> EncodedBlock {
        let raw = Conversion.bytes(values, dtype: dtype)
        return raw.withUnsafeBytes { encodeRaw($0, dtype: dtype) }
    }

    /// Decodes a block of `elements` values into `destination` as `dtype`.
    public static func decode(
        _ block: UnsafeRawBufferPointer, encoding: BlockEncoding, elements: Int, shape: BlockShape,
        to dtype: DType, into destination: UnsafeMutableRawPointer
    ) throws(BlockError) {
        if QuantizedBlock.bits(scheme: encoding.scheme) != nil {
            try QuantizedBlock.decode(block, encoding: encoding, elements: elements, shape: shape, to: dtype, into: destination)
            return
        }
        guard let stored = encoding.rawDType else {
            throw .unknownScheme(encoding.scheme)
        }
        guard block.count == elements * stored.size else {
            throw .sizeMismatch(scheme: encoding.scheme, expected: elements * stored.size, actual: block.count)
        }
        if elements == 0 { return }
        if stored == dtype {
            BytePlanes.join(block.baseAddress!, count: elements, width: stored.size, into: destination)
            return
        }
        // Different dtype asked for: join into a scratch buffer, then convert through Float.
        var joined = [UInt8](repeating: 0, count: block.count)
        var floats = [Float](repeating: 0, count: elements)
        joined.withUnsafeMutableBytes { j in
            BytePlanes.join(block.baseAddress!, count: elements, width: stored.size, into: j.baseAddress!)
            floats.withUnsafeMutableBufferPointer { f in
                Conversion.toFloat(j.baseAddress!, dtype: stored, count: elements, into: f.baseAddress!)
                Conversion.fromFloat(f.baseAddress!, count: elements, dtype: dtype, into: destination)
            }
        }
    }
}

/// The `[heads, count, dim]` shape of a block.
///
/// Quantized blocks record which entries they keep in F16 inside the block itself
/// (docs/FORMAT.md, "Quantized blocks"), so the shape is all the decoder is told.
public struct BlockShape: Sendable, Equatable {
    public var heads: Int
    public var count: Int
    public var dim: Int
    public init(heads: Int, count: Int, dim: Int) { self.heads = heads; self.count = count; self.dim = dim }
    public var elements: Int { heads * count * dim }
}
