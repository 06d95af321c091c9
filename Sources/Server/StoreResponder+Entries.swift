import Foundation
import Hummingbird
import Pipeline
import Store

/// Metadata: list, show, remove, pin.
extension StoreResponder {
    struct Page: Encodable {
        var entries: [EntryDocument]
        var next: String?

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(entries, forKey: .entries)
            try c.encode(next, forKey: .next)  // null on the last page, not left out
        }
        enum CodingKeys: CodingKey { case entries, next }
    }

    func list(_ query: Query) async throws -> Response {
        let limit: Int
        if let text = query["limit"] {
            guard let n = Int(text), (1...1000).contains(n) else { throw APIError.badRequest("limit \"\(text.prefix(40))\": expected 1 to 1000") }
            limit = n
        } else { limit = 100 }
        let after = query["after"] ?? ""
        guard after.utf8.count <= 64, after.allSatisfy(\.isHexDigit) else {
            throw APIError.badRequest("after \"\(after.prefix(80))\": expected an id (up to 64 hex digits)")
        }
        let (model, key, source) = (query["model"], query["key"], query["source"])
        let records = try await pool.run { root in
            try root.index.page(after: after.lowercased(), limit: limit + 1, model: model, key: key, source: source)
        }
        let page = Array(records.prefix(limit))
        return try Self.json(Page(entries: page.map { EntryDocument(record: $0) },
                                  next: records.count > limit ? page.last?.id : nil))
    }

    func show(_ resolve: @escaping @Sendable (StoreRoot) throws -> EntryRecord) async throws -> Response {
        let document = try await pool.run { root in
            let r = try resolve(root)
            return EntryDocument(record: r, sources: try root.index.sources(of: r.id))
        }
        return try Self.json(document)
    }

    /// Only by the full id: a client that retries a DELETE whose answer it lost must not
    /// remove whatever entry a short prefix names by then.
    func remove(_ id: String) async throws -> Response {
        struct Removed: Encodable { var id: String; var removed = true }
        guard id.count == 64, id.allSatisfy(\.isHexDigit) else {
            throw APIError.badRequest("DELETE needs the entry's full id (64 hex digits), not \"\(id.prefix(80))\": a prefix may name another entry by the time a request is retried")
        }
        let record = try await pool.run { root in
            let r = try root.index.resolve(id)
            _ = try root.removeEntry(r.id)
            return r
        }
        logger.info("removed \(record.id)")
        return try Self.json(Removed(id: record.id))
    }

    func pin(_ id: String, _ query: Query) async throws -> Response {
        struct Pinned: Encodable { var id: String; var pinned: Bool }
        let pinned: Bool
        switch query["pinned"] {
        case nil, "true", "1": pinned = true
        case "false", "0": pinned = false
        case let v?: throw APIError.badRequest("pinned \"\(v.prefix(40))\": expected true or false")
        }
        let record = try await pool.run { root in
            let r = try root.index.resolve(id)
            try root.index.setPinned(r.id, pinned)
            return r
        }
        logger.info("\(pinned ? "pinned" : "unpinned") \(record.id)")
        return try Self.json(Pinned(id: record.id, pinned: pinned))
    }
}
