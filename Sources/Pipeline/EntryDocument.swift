import Foundation
import LightKV
import Store

/// An entry as the HTTP API and the CLI's `--json` answer it (docs/openapi.yaml, `Entry` and
/// `EntryDetail`; README, "JSON"): the index row with its JSON columns (spans, compression,
/// fidelity) as JSON, not strings in strings.
///
///     EntryDocument(record: r)                                   // a listing's summary
///     EntryDocument(record: r, sources: try index.sources(of: r.id))  // in full
public struct EntryDocument: Encodable, Sendable {
    public var record: EntryRecord
    /// Present in the detailed form only.
    public var sources: [String]?
    /// Where the blob lies on this host (`kvstore show --json`); the HTTP API names no file.
    public var blobPath: String?

    public init(record: EntryRecord, sources: [String]? = nil, blobPath: String? = nil) {
        self.record = record
        self.sources = sources
        self.blobPath = blobPath
    }

    enum Key: String, CodingKey {
        case id, key, model, policy, layers, kv_heads, head_dim, v_head_dim, seq_len, input_dtype, entries_kept
        case bytes_in, bytes_out, ratio, created_at, last_accessed, access_count, pinned
        case spans, compression, fidelity, sources, blob, blob_path, segment
    }

    /// A segmented entry's shared prefix (docs/design/segments.md).
    struct Segment: Encodable { var blob: String; var bytes: Int? }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        let r = record
        try c.encode(r.id, forKey: .id)
        try c.encode(r.producerKey, forKey: .key)
        try c.encode(r.model, forKey: .model)
        try c.encode(r.policy, forKey: .policy)
        try c.encode(r.layers, forKey: .layers)
        try c.encode(r.kvHeads, forKey: .kv_heads)
        try c.encode(r.headDim, forKey: .head_dim)
        try c.encode(r.vHeadDim, forKey: .v_head_dim)
        try c.encode(r.seqLen, forKey: .seq_len)
        try c.encode(r.inputDType, forKey: .input_dtype)
        try c.encode(r.entriesKept, forKey: .entries_kept)
        try c.encode(r.bytesIn, forKey: .bytes_in)
        try c.encode(r.bytesOut, forKey: .bytes_out)
        try c.encode((r.ratio * 1000).rounded() / 1000, forKey: .ratio)
        try c.encode(r.createdAt, forKey: .created_at)
        try c.encode(r.lastAccessed, forKey: .last_accessed)
        try c.encode(r.accessCount, forKey: .access_count)
        try c.encode(r.pinned, forKey: .pinned)
        try c.encodeIfPresent(r.segment.map { Segment(blob: $0, bytes: r.segmentBytes) }, forKey: .segment)
        guard let sources else { return }
        try c.encode((try? JSONDecoder().decode([Span].self, from: Data(r.spans.utf8))) ?? [], forKey: .spans)
        try c.encode((try? JSONDecoder().decode([String: String].self, from: Data(r.compression.utf8))) ?? [:], forKey: .compression)
        try c.encode(r.fidelity.flatMap { JSONValue(json: $0) }, forKey: .fidelity)
        try c.encode(sources, forKey: .sources)
        try c.encode(r.blob, forKey: .blob)
        try c.encodeIfPresent(blobPath, forKey: .blob_path)
    }
}

/// Any JSON value, to pass a stored JSON document through unchanged.
public enum JSONValue: Codable, Sendable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    public init?(json: String) {
        guard let v = try? JSONDecoder().decode(JSONValue.self, from: Data(json.utf8)) else { return nil }
        self = v
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let d): if d.isFinite { try c.encode(d) } else { try c.encodeNil() }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}

extension EntryDocument {
    /// An entry in full, with where its blob lies on this host: what the CLI's `show`,
    /// `ls` and `ingest` print with `--json`.
    public static func local(_ record: EntryRecord, in root: StoreRoot) throws -> EntryDocument {
        EntryDocument(record: record, sources: try root.index.sources(of: record.id), blobPath: root.blobs.location(record.blob))
    }
}
