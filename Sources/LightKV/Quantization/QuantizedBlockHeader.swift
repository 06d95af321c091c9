/// Which elements share a scale and zero point: keys per channel, values per token.
public enum QuantAxis: UInt8, Sendable {
    /// G consecutive tokens of one channel (keys).
    case channel = 0
    /// G consecutive channels of one token (values).
    case token = 1

    /// The spelling in `BlockEncoding.axis`.
    public var name: String { self == .channel ? "channel" : "token" }
    public init?(name: String) {
        switch name {
        case "channel": self = .channel
        case "token": self = .token
        default: return nil
        }
    }
}

/// The fixed 28-byte header of a quantized block, and the section layout it implies.
///
/// All integers little-endian (docs/FORMAT.md, "Quantized blocks"):
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 4 | magic `4B 56 51 01` ("KVQ", format version 1) |
/// | 4 | 1 | bits: 8, 4 or 2 |
/// | 5 | 1 | axis: 0 channel (keys), 1 token (values) |
/// | 6 | 2 | flags: bit 0 = code rows are delta-coded (`CodeDelta`); bit 1 = code rows are of Hadamard-rotated rows (`HadamardRotation`); other bits 0 |
/// | 8 | 4 | group size G (power of two) |
/// | 12 | 4 | heads |
/// | 16 | 4 | count (entries, kept and quantized) |
/// | 20 | 4 | dim |
/// | 24 | 4 | kept (entries stored in F16) |
struct QuantizedBlockHeader: Equatable {
    static let magic: [UInt8] = [0x4B, 0x56, 0x51, 0x01]
    static let size = 28

    var bits: Int
    var axis: QuantAxis
    var group: Int
    var heads: Int
    var count: Int
    var dim: Int
    var kept: Int
    /// Code rows after the first of each head hold their difference from the row before.
    var deltaRows = true
    /// Quantized rows were rotated by `HadamardRotation` before quantizing; decoding rotates back.
    var rotated = false

    /// Entries that are quantized (`n` in the format description).
    var quantized: Int { count - kept }
    var levels: Int { (1 << bits) - 1 }
    var rowBytes: Int { CodePacking.rowBytes(count: dim, bits: bits) }

    var parameterCount: Int {
        axis == .channel ? KeyQuantizer.parameterCount(self) : ValueQuantizer.parameterCount(self)
    }

    // Sections, in order.
    var keptIndicesOffset: Int { Self.size }
    var keptValuesOffset: Int { keptIndicesOffset + 4 * kept }
    var scalesOffset: Int { keptValuesOffset + 2 * heads * kept * dim }
    var zerosOffset: Int { scalesOffset + 2 * parameterCount }
    var codesOffset: Int { zerosOffset + 2 * parameterCount }
    var totalBytes: Int { codesOffset + heads * quantized * rowBytes }

    func write(to out: UnsafeMutableRawPointer) {
        for (i, b) in Self.magic.enumerated() { out.storeBytes(of: b, toByteOffset: i, as: UInt8.self) }
        out.storeBytes(of: UInt8(bits), toByteOffset: 4, as: UInt8.self)
        out.storeBytes(of: axis.rawValue, toByteOffset: 5, as: UInt8.self)
        out.storeBytes(of: UInt16((deltaRows ? 1 : 0) | (rotated ? 2 : 0)).littleEndian, toByteOffset: 6, as: UInt16.self)
        for (i, v) in [group, heads, count, dim, kept].enumerated() {
            out.storeBytes(of: UInt32(v).littleEndian, toByteOffset: 8 + 4 * i, as: UInt32.self)
        }
    }

    /// Reads the header and checks it against what the pack index says about the block.
    static func read(_ block: UnsafeRawBufferPointer, scheme: String, bits expectedBits: Int,
                     encoding: BlockEncoding, shape: BlockShape) throws(BlockError) -> QuantizedBlockHeader {
        guard block.count >= size else {
            throw .truncated(scheme: scheme, section: "header", needed: size, actual: block.count)
        }
        func u32(_ offset: Int) -> Int { Int(UInt32(littleEndian: block.loadUnaligned(fromByteOffset: offset, as: UInt32.self))) }
        func mismatch(_ field: String, _ value: Int, _ expected: String) -> BlockError {
            .badHeader(scheme: scheme, field: field, value: value, expected: expected)
        }
        for i in 0..<4 where block[i] != magic[i] {
            throw mismatch("magic byte \(i)", Int(block[i]), "\(magic[i]) (\"KVQ\" version 1)")
        }
        guard Int(block[4]) == expectedBits else { throw mismatch("bits", Int(block[4]), "\(expectedBits) (the scheme)") }
        guard let axis = QuantAxis(rawValue: block[5]) else { throw mismatch("axis", Int(block[5]), "0 (channel) or 1 (token)") }
        if let named = encoding.axis {
            guard QuantAxis(name: named) == axis else { throw mismatch("axis", Int(block[5]), "\"\(named)\" (the encoding)") }
        }
        let flags = Int(UInt16(littleEndian: block.loadUnaligned(fromByteOffset: 6, as: UInt16.self)))
        guard flags & ~3 == 0 else { throw mismatch("flags", flags, "0 to 3 (bit 0: delta-coded rows, bit 1: Hadamard-rotated rows)") }
        let group = u32(8)
        guard group > 0, group & (group - 1) == 0 else { throw mismatch("group", group, "a positive power of two") }
        if let g = encoding.group, g != group { throw mismatch("group", group, "\(g) (the encoding)") }
        let heads = u32(12), count = u32(16), dim = u32(20), kept = u32(24)
        guard heads == shape.heads else { throw mismatch("heads", heads, "\(shape.heads) (the block shape)") }
        guard count == shape.count else { throw mismatch("count", count, "\(shape.count) (the block shape)") }
        guard dim == shape.dim else { throw mismatch("dim", dim, "\(shape.dim) (the block shape)") }
        guard kept <= count else { throw mismatch("kept", kept, "at most count = \(count)") }
        var header = QuantizedBlockHeader(bits: expectedBits, axis: axis, group: group, heads: heads, count: count, dim: dim, kept: kept)
        header.deltaRows = flags & 1 == 1
        header.rotated = flags & 2 == 2
        guard !header.rotated || HadamardRotation.applies(to: dim) else {
            throw mismatch("dim", dim, "a power of two (the rows are Hadamard-rotated)")
        }
        guard header.totalBytes == block.count else {
            throw .sizeMismatch(scheme: scheme, expected: header.totalBytes, actual: block.count)
        }
        return header
    }
}
