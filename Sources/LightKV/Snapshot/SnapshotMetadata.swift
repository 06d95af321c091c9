import Foundation

/// The `__metadata__` of a kvsnap file, parsed and checked.
public struct SnapshotMetadata: Sendable, Equatable {
    public static let versionKey = "kvsnap.version"
    public static let modelKey = "kvsnap.model"
    public static let spansKey = "kvsnap.spans"
    public static let keyKey = "kvsnap.key"
    public static let nextPositionKey = "kvsnap.next_position"
    public static let seqLenKey = "kvsnap.seq_len"
    public static let compressionKey = "kvsnap.compression"
    /// Written by `fetch --prefix`: the entry whose shareable prefix the file holds.
    public static let prefixOfKey = "kvsnap.prefix_of"

    public var model: String
    public var spans: [Span]
    public var key: String?
    public var nextPosition: Int?
    /// Original sequence length; present in the file only for already-compressed inputs.
    public var seqLen: Int?
    /// Every metadata entry as read, so fetch can hand back what the producer wrote.
    public var raw: [String: String]

    public init(model: String, spans: [Span], key: String? = nil, nextPosition: Int? = nil,
                seqLen: Int? = nil, extra: [String: String] = [:]) {
        self.model = model; self.spans = spans; self.key = key; self.nextPosition = nextPosition; self.seqLen = seqLen
        var raw = extra
        raw[Self.versionKey] = "1"
        raw[Self.modelKey] = model
        raw[Self.spansKey] = Self.encode(spans)
        if let key { raw[Self.keyKey] = key }
        if let nextPosition { raw[Self.nextPositionKey] = String(nextPosition) }
        if let seqLen { raw[Self.seqLenKey] = String(seqLen) }
        self.raw = raw
    }

    public init(parsing raw: [String: String]) throws(KVSnapError) {
        self.raw = raw
        guard let version = raw[Self.versionKey] else { throw .badMetadata(key: Self.versionKey, problem: "missing") }
        guard version == "1" else { throw .badMetadata(key: Self.versionKey, problem: "version \"\(version)\" is not supported (expected \"1\")") }
        guard let model = raw[Self.modelKey], !model.isEmpty else { throw .badMetadata(key: Self.modelKey, problem: "missing or empty") }
        self.model = model
        guard let spansText = raw[Self.spansKey] else { throw .badMetadata(key: Self.spansKey, problem: "missing") }
        do { spans = try JSONDecoder().decode([Span].self, from: Data(spansText.utf8)) } catch {
            throw .badSpans("not a JSON array of spans (\(Self.describe(error)))")
        }
        key = raw[Self.keyKey]
        nextPosition = try Self.integer(raw, Self.nextPositionKey)
        seqLen = try Self.integer(raw, Self.seqLenKey)
    }

    /// The end of the shareable prefix (KVSNAP.md, "The shareable prefix"): the start of the
    /// first span with role `prompt`, else `seqLen`. Positions before it depend only on the
    /// tokens before it, whatever the question that follows.
    public func prefixEnd(seqLen: Int) -> Int {
        spans.first { $0.role == .prompt }?.start ?? seqLen
    }

    public static func encode(_ spans: [Span]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try! encoder.encode(spans), as: UTF8.self)
    }

    private static func integer(_ raw: [String: String], _ key: String) throws(KVSnapError) -> Int? {
        guard let text = raw[key] else { return nil }
        guard let n = Int(text), n >= 0 else { throw .badMetadata(key: key, problem: "\"\(text)\" is not a non-negative integer") }
        return n
    }

    private static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c): return c.debugDescription
        case DecodingError.keyNotFound(let k, let c): return "missing \"\(k.stringValue)\" at \(c.codingPath.map(\.stringValue))"
        case DecodingError.typeMismatch(_, let c): return "wrong type at \(c.codingPath.map(\.stringValue)): \(c.debugDescription)"
        case DecodingError.valueNotFound(_, let c): return "missing value at \(c.codingPath.map(\.stringValue))"
        default: return "\(error)"
        }
    }
}
