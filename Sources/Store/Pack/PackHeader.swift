import LightKV

/// The JSON header of a kvpack file (docs/FORMAT.md).
public struct PackHeader: Codable, Sendable {
    public static let magic: [UInt8] = Array("KVPACK".utf8) + [0, 1]
    /// The magic of a segmented entry's own part (format 2): a reader that knows only format
    /// 1 refuses it rather than serve the part as the whole entry.
    public static let segmentedMagic: [UInt8] = Array("KVPACK".utf8) + [0, 2]
    public static let footerMagic: [UInt8] = Array("KVPKEND1".utf8)
    public static let footerLength = 32
    /// Largest header a reader accepts.
    public static let maximumLength = 16 << 20

    public var format: Int
    public var metadata: [String: String]
    public var seqLen: Int
    public var kvHeads: Int
    public var headDim: Int
    public var vHeadDim: Int
    public var inputDType: String
    public var compression: [String: String]
    public var layers: [SectionDescriptor]
    /// The index row's facts, for `kvstore repair` (absent in packs written before it).
    public var entry: PackEntry?
    /// The input's token ids, when it carried them (docs/FORMAT.md).
    public var inputIDs: PackInputIDs?
    /// A segment's own record, or the segment a segmented entry's part continues
    /// (docs/design/segments.md); absent in whole entries.
    public var segment: PackSegment?

    /// True for a segmented entry's own part (format 2), whose prefix lies in `segment.name`.
    public var isSegmented: Bool { segment?.name != nil }
    /// True for a segment: a shared prefix that no entry record describes.
    public var isSegment: Bool { segment != nil && segment?.name == nil }

    enum CodingKeys: String, CodingKey {
        case format, metadata, compression, layers, entry, segment
        case inputIDs = "input_ids"
        case seqLen = "seq_len", kvHeads = "kv_heads", headDim = "head_dim", vHeadDim = "v_head_dim"
        case inputDType = "input_dtype"
    }

    /// Entries kept over all layers.
    public var entryCount: Int { layers.reduce(0) { $0 + $1.count } }

    /// The end of the shareable prefix, from the metadata's spans (`SnapshotMetadata.prefixEnd`).
    public var prefixEnd: Int {
        (try? SnapshotMetadata(parsing: metadata))?.prefixEnd(seqLen: seqLen) ?? seqLen
    }
}

/// The shared prefix of a segmented entry (docs/design/segments.md). In a segment's header
/// `name` is absent; in an entry's part it names the segment blob.
public struct PackSegment: Codable, Sendable, Equatable {
    /// Content name of the segment blob (entry parts only).
    public var name: String?
    /// `PrefixDigest` of the prefix (segments only).
    public var prefixDigest: String?
    /// The prefix's length `p`: the segment holds positions `[0, p)`, the part `[p, seq_len)`.
    public var length: Int

    public init(name: String? = nil, prefixDigest: String? = nil, length: Int) {
        self.name = name; self.prefixDigest = prefixDigest; self.length = length
    }

    enum CodingKeys: String, CodingKey {
        case name, length
        case prefixDigest = "prefix_digest"
    }
}

/// The token ids of a snapshot, as its producer gave them (`input_ids`).
public struct PackInputIDs: Codable, Sendable, Equatable {
    /// `I32` or `I64`: the dtype fetch writes them back in.
    public var dtype: String
    public var ids: [Int64]

    public init(dtype: String, ids: [Int64]) { self.dtype = dtype; self.ids = ids }
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
    /// Member positions stored after the sizes (Σ sizes of them, or 0 when not tracked).
    public var members: Int
    /// Entries at positions before the shareable prefix's end (the first `prefix` ones);
    /// absent in packs written before it.
    public var prefix: Int?

    enum CodingKeys: String, CodingKey {
        case count, offset, codec, level, checksum, keys, values, members, prefix
        case storedLength = "stored_length", rawLength = "raw_length", rawChecksum = "raw_checksum"
    }

    public init(count: Int, offset: Int, storedLength: Int, rawLength: Int, codec: String, level: Int?,
                checksum: String, rawChecksum: String, keys: Block, values: Block, members: Int) {
        self.count = count; self.offset = offset; self.storedLength = storedLength; self.rawLength = rawLength
        self.codec = codec; self.level = level; self.checksum = checksum; self.rawChecksum = rawChecksum
        self.keys = keys; self.values = values; self.members = members
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        count = try c.decode(Int.self, forKey: .count)
        offset = try c.decode(Int.self, forKey: .offset)
        storedLength = try c.decode(Int.self, forKey: .storedLength)
        rawLength = try c.decode(Int.self, forKey: .rawLength)
        codec = try c.decode(String.self, forKey: .codec)
        level = try c.decodeIfPresent(Int.self, forKey: .level)
        checksum = try c.decode(String.self, forKey: .checksum)
        rawChecksum = try c.decode(String.self, forKey: .rawChecksum)
        keys = try c.decode(Block.self, forKey: .keys)
        values = try c.decode(Block.self, forKey: .values)
        members = try c.decodeIfPresent(Int.self, forKey: .members) ?? 0
        prefix = try c.decodeIfPresent(Int.self, forKey: .prefix)
    }

    /// Offset of the positions within the raw section.
    public var positionsOffset: Int { keys.length + values.length }
    /// Offset of the member positions within the raw section.
    public var membersOffset: Int { positionsOffset + 8 * count }
}

/// What an index row holds that the rest of a pack header cannot give back: with it, a
/// lost or damaged index is rebuilt from the blobs alone (`kvstore repair`).
public struct PackEntry: Codable, Sendable, Equatable {
    /// The entry id (SHA-256 of the canonical input snapshot).
    public var id: String
    /// Size of the input file.
    public var bytesIn: Int
    /// When the entry was first ingested (seconds since the epoch).
    public var createdAt: Double
    /// Fidelity measured at ingest (JSON), when the input had probes.
    public var fidelity: String?

    public init(id: String, bytesIn: Int, createdAt: Double, fidelity: String?) {
        self.id = id; self.bytesIn = bytesIn; self.createdAt = createdAt; self.fidelity = fidelity
    }

    enum CodingKeys: String, CodingKey {
        case id, fidelity
        case bytesIn = "bytes_in", createdAt = "created_at"
    }
}
