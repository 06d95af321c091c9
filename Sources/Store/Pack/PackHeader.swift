import LightKV

/// The JSON header of a kvpack file (docs/FORMAT.md).
public struct PackHeader: Codable, Sendable {
    public static let magic: [UInt8] = Array("KVPACK".utf8) + [0, 1]
    public static let footerMagic: [UInt8] = Array("KVPKEND1".utf8)
    public static let footerLength = 32

    public var format: Int
    public var metadata: [String: String]
    public var seqLen: Int
    public var kvHeads: Int
    public var headDim: Int
    public var vHeadDim: Int
    public var inputDType: String
    public var compression: [String: String]
    public var layers: [SectionDescriptor]

    enum CodingKeys: String, CodingKey {
        case format, metadata, compression, layers
        case seqLen = "seq_len", kvHeads = "kv_heads", headDim = "head_dim", vHeadDim = "v_head_dim"
        case inputDType = "input_dtype"
    }

    /// Entries kept over all layers.
    public var entryCount: Int { layers.reduce(0) { $0 + $1.count } }
}

/// Where one layer's section lies and how to read it.
public struct SectionDescriptor: Codable, Sendable {
    public struct Block: Codable, Sendable {
        public var encoding: BlockEncoding
        public var length: Int
    }

    public var count: Int
    public var offset: Int
    public var storedLength: Int
    public var rawLength: Int
    public var codec: String
    public var level: Int?
    public var checksum: String
    public var rawChecksum: String
    public var keys: Block
    public var values: Block

    enum CodingKeys: String, CodingKey {
        case count, offset, codec, level, checksum, keys, values
        case storedLength = "stored_length", rawLength = "raw_length", rawChecksum = "raw_checksum"
    }
}
