import Foundation

/// One stored entry as the index knows it.
public struct EntryRecord: Sendable, Codable, Equatable {
    public var id: String
    public var producerKey: String?
    public var model: String
    public var spans: String
    public var layers: Int
    public var kvHeads: Int
    public var headDim: Int
    public var vHeadDim: Int
    public var seqLen: Int
    public var inputDType: String
    public var entriesKept: Int
    public var policy: String
    public var compression: String
    public var fidelity: String?
    public var bytesIn: Int
    public var bytesOut: Int
    public var blob: String
    public var checksum: String
    public var createdAt: Double
    public var lastAccessed: Double
    public var accessCount: Int
    public var pinned: Bool
    /// The shareable prefix's length and `PrefixDigest`, when the input carried `input_ids`.
    public var prefixLength: Int?
    public var prefixDigest: String?
    /// The segment blob holding this entry's shared prefix and its size, when the entry is
    /// segmented (docs/design/segments.md); `blob` then holds the rest.
    public var segment: String?
    public var segmentBytes: Int?

    public init(id: String, producerKey: String?, model: String, spans: String, layers: Int, kvHeads: Int,
                headDim: Int, vHeadDim: Int, seqLen: Int, inputDType: String, entriesKept: Int, policy: String,
                compression: String, fidelity: String?, bytesIn: Int, bytesOut: Int, blob: String, checksum: String,
                createdAt: Double, lastAccessed: Double, accessCount: Int = 0, pinned: Bool = false,
                prefixLength: Int? = nil, prefixDigest: String? = nil, segment: String? = nil, segmentBytes: Int? = nil) {
        self.id = id; self.producerKey = producerKey; self.model = model; self.spans = spans; self.layers = layers
        self.kvHeads = kvHeads; self.headDim = headDim; self.vHeadDim = vHeadDim; self.seqLen = seqLen
        self.inputDType = inputDType; self.entriesKept = entriesKept; self.policy = policy
        self.compression = compression; self.fidelity = fidelity; self.bytesIn = bytesIn; self.bytesOut = bytesOut
        self.blob = blob; self.checksum = checksum; self.createdAt = createdAt; self.lastAccessed = lastAccessed
        self.accessCount = accessCount; self.pinned = pinned
        self.prefixLength = prefixLength; self.prefixDigest = prefixDigest
        self.segment = segment; self.segmentBytes = segmentBytes
    }

    static let columns = "id, producer_key, model, spans, layers, kv_heads, head_dim, v_head_dim, seq_len, input_dtype, entries_kept, policy, compression, fidelity, bytes_in, bytes_out, blob, checksum, created_at, last_accessed, access_count, pinned, prefix_length, prefix_digest, segment, segment_bytes, prefix_source"

    var sqlValues: [SQLValue] {
        [.text(id), producerKey.map(SQLValue.text) ?? .null, .text(model), .text(spans), .int(layers), .int(kvHeads),
         .int(headDim), .int(vHeadDim), .int(seqLen), .text(inputDType), .int(entriesKept), .text(policy),
         .text(compression), fidelity.map(SQLValue.text) ?? .null, .int(bytesIn), .int(bytesOut), .text(blob),
         .text(checksum), .double(createdAt), .double(lastAccessed), .int(accessCount), .int(pinned ? 1 : 0),
         prefixLength.map(SQLValue.int) ?? .null, prefixDigest.map(SQLValue.text) ?? .null,
         segment.map(SQLValue.text) ?? .null, segmentBytes.map(SQLValue.int) ?? .null,
         prefixSource.map(SQLValue.text) ?? .null]
    }

    /// The guided segment's source its record names (`prefix_source`), indexed for the lookup
    /// of a later question (docs/design/segments.md, "A guided prefix").
    public var prefixSource: String? {
        guard compression.contains("\"\(EntryIndex.prefixSourceKey)\""),
              let record = try? JSONDecoder().decode([String: String].self, from: Data(compression.utf8)) else { return nil }
        return record[EntryIndex.prefixSourceKey]
    }

    init(row: Row) {
        self.init(id: row.text("id") ?? "", producerKey: row.text("producer_key"), model: row.text("model") ?? "",
                  spans: row.text("spans") ?? "[]", layers: row.int("layers") ?? 0, kvHeads: row.int("kv_heads") ?? 0,
                  headDim: row.int("head_dim") ?? 0, vHeadDim: row.int("v_head_dim") ?? 0, seqLen: row.int("seq_len") ?? 0,
                  inputDType: row.text("input_dtype") ?? "", entriesKept: row.int("entries_kept") ?? 0,
                  policy: row.text("policy") ?? "", compression: row.text("compression") ?? "{}",
                  fidelity: row.text("fidelity"), bytesIn: row.int("bytes_in") ?? 0, bytesOut: row.int("bytes_out") ?? 0,
                  blob: row.text("blob") ?? "", checksum: row.text("checksum") ?? "",
                  createdAt: row.double("created_at") ?? 0, lastAccessed: row.double("last_accessed") ?? 0,
                  accessCount: row.int("access_count") ?? 0, pinned: (row.int("pinned") ?? 0) != 0,
                  prefixLength: row.int("prefix_length"), prefixDigest: row.text("prefix_digest"),
                  segment: row.text("segment"), segmentBytes: row.int("segment_bytes"))
    }

    /// The blobs that hold this entry: its own, then its segment.
    public var blobs: [String] { [blob] + (segment.map { [$0] } ?? []) }

    /// Input bytes over the bytes that hold the entry: its blob, and its segment when it has one
    /// (shared with other entries, but needed whole to serve this one).
    public var ratio: Double {
        let stored = bytesOut + (segmentBytes ?? 0)
        return stored > 0 ? Double(bytesIn) / Double(stored) : 0
    }
}
