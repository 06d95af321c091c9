import Foundation
import LightKV

/// A stored prefix found for a request (`EntryIndex.longestPrefix`).
public struct PrefixMatch: Sendable, Codable, Equatable {
    /// The entry whose prefix it is (`fetch ID --prefix` writes it).
    public var id: String
    /// Tokens the prefix covers: the request prefills from here on.
    public var length: Int
    /// Media sources inside the prefix that were compared with the request's and agree;
    /// 0 when the match rests on the token ids alone (the request gave no sources, or the
    /// stored spans carry none).
    public var sourcesChecked: Int

    enum CodingKeys: String, CodingKey { case id, length, sourcesChecked = "sources_checked" }
}

/// The lookup a serving node makes before prefill: the longest stored prefix of its request.
extension EntryIndex {
    /// The longest stored shareable prefix of `model` whose token ids start `ids`, and whose
    /// media sources, where both sides name them, equal `sources` in order. Among entries
    /// sharing that prefix the most recently fetched wins. Nil when none matches.
    public func longestPrefix(model: String, ids: [Int64], sources: [String] = []) throws -> PrefixMatch? {
        let lengths = try db.query("""
            SELECT DISTINCT prefix_length FROM entries
            WHERE model = ? AND prefix_digest IS NOT NULL AND prefix_length > 0 AND prefix_length <= ?
            ORDER BY prefix_length DESC
            """, [.text(model), .int(ids.count)]).compactMap { $0.int("prefix_length") }
        for length in lengths {
            let digest = PrefixDigest.of(model: model, ids: ids[0..<length])
            let candidates = try db.query("""
                SELECT * FROM entries WHERE model = ? AND prefix_digest = ? AND prefix_length = ?
                ORDER BY last_accessed DESC, id
                """, [.text(model), .text(digest), .int(length)]).map(EntryRecord.init(row:))
            for record in candidates {
                if let checked = Self.sourcesAgree(record, length: length, request: sources) {
                    return PrefixMatch(id: record.id, length: length, sourcesChecked: checked)
                }
            }
        }
        return nil
    }

    /// How many media sources inside the prefix agree with the request's, or nil when one
    /// differs: the i-th media span of the prefix is compared with `request[i]` where both exist.
    static func sourcesAgree(_ record: EntryRecord, length: Int, request: [String]) -> Int? {
        let spans = (try? JSONDecoder().decode([Span].self, from: Data(record.spans.utf8))) ?? []
        let stored = spans.filter { $0.kind != .text && $0.end <= length }.map(\.source)
        var checked = 0
        for (mine, theirs) in zip(stored, request) {
            guard let mine else { continue }
            guard mine == theirs else { return nil }
            checked += 1
        }
        return checked
    }
}

/// A prompt-guided segment a later question may reuse (docs/design/segments.md, "A guided prefix").
extension EntryIndex {
    /// Record key naming the unreduced prefix (`PrefixSource`) a guided segment was reduced from.
    public static let prefixSourceKey = "prefix_source"
    /// Record key naming the entry whose question guided a guided segment.
    public static let guidedByKey = "guided_by"

    /// Segments reduced from the unreduced prefix `source` under `policy`, most recently
    /// written first, with their sizes: what the rows naming them say. The caller checks the
    /// blob itself before naming it.
    public func guidedSegments(model: String, prefixDigest: String, policy: String, source: String) throws -> [(name: String, bytes: Int)] {
        // `prefix_source` is indexed with the model (migration 0006); the record is compared in
        // full below, as the column is derived from it.
        let rows = try db.query("""
            SELECT segment, segment_bytes, compression FROM entries
            WHERE model = ? AND prefix_source = ? AND prefix_digest = ? AND policy = ? AND segment IS NOT NULL
            ORDER BY created_at DESC
            """, [.text(model), .text(source), .text(prefixDigest), .text(policy)])
        var found: [(name: String, bytes: Int)] = []
        for row in rows {
            guard let name = row.text("segment"), let bytes = row.int("segment_bytes"),
                  let record = try? JSONDecoder().decode([String: String].self, from: Data((row.text("compression") ?? "").utf8)),
                  record[Self.prefixSourceKey] == source, !found.contains(where: { $0.name == name }) else { continue }
            found.append((name, bytes))
        }
        return found
    }
}
