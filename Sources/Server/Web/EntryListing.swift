import Foundation
import Store

/// What the index page lists: the entries matching a search and the model and policy
/// filters, in the order asked for, one page of them. Read from the index with a query of
/// its own (ids, then each row), so a large store is never loaded whole.
struct EntryListing {
    /// A sortable column: its name in the page's links and its SQL expression.
    enum Column: String, CaseIterable {
        case created, fetched, fetches, key, model, policy, layers, bytesIn = "in", stored, ratio

        var sql: String {
            switch self {
            case .created: "created_at"
            case .fetched: "last_accessed"
            case .fetches: "access_count"
            case .key: "coalesce(producer_key, '')"
            case .model: "model"
            case .policy: "policy"
            case .layers: "layers"
            case .bytesIn: "bytes_in"
            case .stored: "bytes_out"
            case .ratio: "(CASE WHEN bytes_out + COALESCE(segment_bytes, 0) > 0 THEN 1.0 * bytes_in / (bytes_out + COALESCE(segment_bytes, 0)) ELSE 0 END)"
            }
        }
    }

    static let pageSize = 100

    var text = ""
    var model: String?
    var policy: String?
    var sort = Column.created
    var descending = true
    /// 1-based.
    var page = 1

    /// From the page's query string; anything not understood falls back to the default.
    init(query: [String: String]) {
        text = String((query["q"] ?? "").trimmingCharacters(in: .whitespaces).prefix(1024))
        model = query["model"].flatMap { $0.isEmpty ? nil : String($0.prefix(1024)) }
        policy = query["policy"].flatMap { $0.isEmpty ? nil : String($0.prefix(1024)) }
        sort = query["sort"].flatMap(Column.init(rawValue:)) ?? .created
        descending = query["order"].map { $0 != "asc" } ?? true
        page = query["page"].flatMap { Int($0) }.map { min(max($0, 1), 1_000_000) } ?? 1
    }

    /// The page's query string with `changes` applied (nil removes a parameter), defaults left out.
    func link(_ changes: [String: String?] = [:]) -> String {
        var fields: [(String, String?)] = [("q", text.isEmpty ? nil : text), ("model", model), ("policy", policy),
                                           ("sort", sort == .created ? nil : sort.rawValue), ("order", descending ? nil : "asc"),
                                           ("page", page == 1 ? nil : String(page))]
        for (name, value) in changes {
            if let i = fields.firstIndex(where: { $0.0 == name }) { fields[i].1 = value } else { fields.append((name, value)) }
        }
        let query = fields.compactMap { name, value in value.map { "\(name)=\(HTML.urlComponent($0))" } }.joined(separator: "&")
        return query.isEmpty ? "/" : "/?" + query
    }

    /// The matching entries (a page of them) and how many match in all.
    func run(_ index: EntryIndex) throws -> (entries: [EntryRecord], total: Int) {
        var conditions: [String] = [], values: [SQLValue] = []
        if !text.isEmpty {
            // As `EntryIndex.search`: producer key, model or a source contains it, or an id starts with it.
            let t = SQLValue.text(text.lowercased()), d = index.db.dialect
            conditions.append("""
                (\(d.position(of: "?", in: "lower(coalesce(producer_key, ''))")) > 0 OR \(d.position(of: "?", in: "lower(model)")) > 0
                 OR \(d.position(of: "?", in: "id")) = 1
                 OR id IN (SELECT entry_id FROM sources WHERE \(d.position(of: "?", in: "lower(source)")) > 0))
                """)
            values += [t, t, t, t]
        }
        if let model { conditions.append("model = ?"); values.append(.text(model)) }
        if let policy { conditions.append("policy = ?"); values.append(.text(policy)) }
        let filter = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let total = try index.db.query("SELECT COUNT(*) AS n FROM entries \(filter)", values).first?.int("n") ?? 0
        let direction = descending ? "DESC" : "ASC"
        let ids = try index.db.query("SELECT id FROM entries \(filter) ORDER BY \(sort.sql) \(direction), id \(direction) LIMIT ? OFFSET ?",
                                     values + [.int(Self.pageSize), .int((page - 1) * Self.pageSize)]).compactMap { $0.text("id") }
        return (try ids.compactMap { try index.entry(id: $0) }, total)
    }
}
