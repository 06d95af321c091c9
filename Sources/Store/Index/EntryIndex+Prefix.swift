import Foundation
import LightKV

/// A stored prefix found for a request (`EntryIndex.longestPrefix`).
public struct PrefixMatch: Sendable, Codable, Equatable {
    /// The entry whose prefix it is (`fetch ID --prefix` writes it).
    public var id: String
    /// Tokens the prefix covers: the request prefills from here on.
    public var length: Int
    /// Media spans (images, videos) inside the prefix, each named alike by the request's
    /// sources and the stored entry's: every one is, or there is no match; 0 for a prefix of
    /// text alone.
    public var sourcesChecked: Int

    enum CodingKeys: String, CodingKey { case id, length, sourcesChecked = "sources_checked" }
}

/// The lookup a serving node makes before prefill: the longest stored prefix of its request.
extension EntryIndex {
    /// The longest stored shareable prefix of `model` whose token ids start `ids` and whose
    /// every image or video is the request's: named by a source, the i-th media span inside the
    /// prefix by `sources[i]`. Token ids do not identify media (a processor's placeholders are
    /// the same for every image), so a prefix holding media the request does not name, or media
    /// stored without a source, is not the request's. An entry naming a blob a read found
    /// damaged (`noteDamaged`) is passed over: it cannot be served, and another may hold the
    /// same prefix intact. Among entries sharing that prefix the most recently fetched wins.
    /// Nil when none matches.
    public func longestPrefix(model: String, ids: [Int64], sources: [String] = []) throws -> PrefixMatch? {
        let lengths = try db.query("""
            SELECT DISTINCT prefix_length FROM entries
            WHERE model = ? AND prefix_digest IS NOT NULL AND prefix_length > 0 AND prefix_length <= ?
            ORDER BY prefix_length DESC
            """, [.text(model), .int(ids.count)]).compactMap { $0.int("prefix_length") }
        let digests = PrefixDigest.of(model: model, ids: ids, lengths: lengths)
        let damaged = lengths.isEmpty ? [:] : try damagedBlobs()
        for length in lengths {
            let candidates = try db.query("""
                SELECT * FROM entries WHERE model = ? AND prefix_digest = ? AND prefix_length = ?
                ORDER BY last_accessed DESC, id
                """, [.text(model), .text(digests[length]!), .int(length)]).map(EntryRecord.init(row:))
            for record in candidates where !record.blobs.contains(where: { damaged[$0] != nil }) {
                if let checked = Self.sourcesAgree(record, length: length, request: sources) {
                    return PrefixMatch(id: record.id, length: length, sourcesChecked: checked)
                }
            }
        }
        return nil
    }

    /// The number of media spans inside the prefix when the stored entry and the request name
    /// every one of them alike (the i-th media span with `request[i]`); nil otherwise, and nil
    /// when the stored spans cannot be read.
    static func sourcesAgree(_ record: EntryRecord, length: Int, request: [String]) -> Int? {
        guard let spans = try? JSONDecoder().decode([Span].self, from: Data(record.spans.utf8)) else { return nil }
        let stored = spans.filter { $0.kind != .text && $0.start < length }.map(\.source)
        guard stored.count <= request.count else { return nil }
        for (mine, theirs) in zip(stored, request) {
            guard let mine, mine == theirs else { return nil }
        }
        return stored.count
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
