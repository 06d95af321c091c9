import Foundation
import Pipeline
import Store

/// `/`: the store at a glance, its models and policies (each a filter), and a table of its
/// entries that can be searched, filtered, sorted and paged; with `canWrite`, a pin and a
/// remove button on each row.
struct OverviewPage {
    var stats: StoreStats
    var listing: EntryListing
    var entries: [EntryRecord]
    /// Entries matching the search and filters, over all pages.
    var total: Int
    var canWrite: Bool

    var html: String {
        func size(_ n: Int) -> String { ByteSize(bytes: n).description }
        var body = "<h1>The store</h1><div class=\"cards\">"
        for (label, value) in [("entries", "\(stats.entries)"), ("bytes in", size(stats.bytesIn)), ("bytes stored", size(stats.bytesOut)),
                               ("ratio", String(format: "%.2f×", stats.ratio)), ("pinned", "\(stats.pinned)"), ("image sources", "\(stats.sources)")] {
            body += "<div class=\"card\"><span class=\"muted\">\(label)</span><b>\(HTML.escape(value))</b></div>"
        }
        body += "</div>"
        body += "<h2>Models and policies</h2><div class=\"cards\">"
        for (name, counts, current) in [("model", stats.models, listing.model), ("policy", stats.policies, listing.policy)] {
            body += HTML.table([name, "entries"], counts.sorted { $0.key < $1.key }.map { value, n in
                let label = HTML.escape(value)
                return [value == current ? "<b>\(label)</b>" : "<a href=\"\(HTML.escape(listing.link([name: value, "page": nil])))\">\(label)</a>", "\(n)"]
            }, numeric: [1])
        }
        body += "</div>"
        body += """
            <h2>Entries</h2>
            <form method="get" action="/"><input type="search" name="q" value="\(HTML.escape(listing.text))" placeholder="key, model, source or id prefix" aria-label="search">
            \(hidden("model", listing.model))\(hidden("policy", listing.policy))<button type="submit">Search</button></form>
            """
        let filters = [("model", listing.model), ("policy", listing.policy)].compactMap { name, value in
            value.map { "\(name) <b>\(HTML.escape($0))</b> (<a href=\"\(HTML.escape(listing.link([name: nil, "page": nil])))\">show all</a>)" }
        }
        if !filters.isEmpty { body += "<p>Only entries of " + filters.joined(separator: " and ") + ".</p>" }
        body += HTML.table(headerCells: headers, entries.map(row), numeric: [4, 5, 6, 7, 8, 11])
        body += pages
        if entries.isEmpty { body += "<p class=\"muted\">No entry matches.</p>" }
        return HTML.page(title: "kvstore", body)
    }

    private func hidden(_ name: String, _ value: String?) -> String {
        value.map { "<input type=\"hidden\" name=\"\(name)\" value=\"\(HTML.escape($0))\">" } ?? ""
    }

    /// Header cells, the sortable ones as links (a second click reverses the order).
    private var headers: [String] {
        var columns: [(String, EntryListing.Column?)] = [
            ("id", nil), ("key", .key), ("model", .model), ("policy", .policy), ("layers", .layers), ("in", .bytesIn),
            ("stored", .stored), ("ratio", .ratio), ("fidelity error", nil), ("created (UTC)", .created),
            ("last fetched (UTC)", .fetched), ("fetches", .fetches), ("pinned", nil)]
        if canWrite { columns.append(("", nil)) }
        return columns.map { label, column in
            guard let column else { return HTML.escape(label) }
            let on = column == listing.sort
            // Numbers and dates read best largest or newest first; names from A.
            let firstDescending = ![EntryListing.Column.key, .model, .policy].contains(column)
            let descending = on ? !listing.descending : firstDescending
            let href = listing.link(["sort": column.rawValue, "order": descending ? nil : "asc", "page": nil])
            return "<a\(on ? " class=\"on\"" : "") href=\"\(HTML.escape(href))\">\(HTML.escape(label))\(on ? (listing.descending ? " ▼" : " ▲") : "")</a>"
        }
    }

    private func row(_ r: EntryRecord) -> [String] {
        func size(_ n: Int) -> String { ByteSize(bytes: n).description }
        var cells = ["<a class=\"id\" href=\"/entries/\(r.id)\">\(r.id.prefix(12))</a>", HTML.escape(r.producerKey ?? "–"), HTML.escape(r.model),
                     HTML.escape(r.policy), "\(r.layers)", size(r.bytesIn), size(r.bytesOut), String(format: "%.2f×", r.ratio),
                     Self.fidelityError(r.fidelity), Self.date(r.createdAt), r.accessCount > 0 ? Self.date(r.lastAccessed) : "never",
                     "\(r.accessCount)", r.pinned ? "yes" : ""]
        if canWrite {
            let back = listing.link()
            cells.append(HTML.button(r.pinned ? "unpin" : "pin", action: "/entries/\(r.id)/pin", fields: [("pinned", r.pinned ? "0" : "1"), ("back", back)])
                         + HTML.button("remove", action: "/entries/\(r.id)/remove", fields: [("back", back)]))
        }
        return cells
    }

    /// "Page 2 of 7" with links to the neighbours, first and last.
    private var pages: String {
        let count = max(1, (total + EntryListing.pageSize - 1) / EntryListing.pageSize)
        let first = (listing.page - 1) * EntryListing.pageSize
        var out = "<p class=\"pages\"><b>\(total == 0 ? 0 : first + 1)–\(first + entries.count) of \(total)</b>"
        for (label, page) in [("« first", 1), ("‹ previous", listing.page - 1), ("next ›", listing.page + 1), ("last »", count)]
        where (1...count).contains(page) && page != listing.page {
            out += "<a href=\"\(HTML.escape(listing.link(["page": page == 1 ? nil : String(page)])))\">\(label)</a>"
        }
        return out + "</p>"
    }

    /// The attention output's relative error with the size bias, from the recorded fidelity.
    static func fidelityError(_ json: String?) -> String {
        guard let json, case .object(let o)? = JSONValue(json: json), case .object(let m)? = o["proportional"],
              case .number(let e)? = m["relative_error"] else { return "–" }
        return String(format: "%.4f", e)
    }

    static func date(_ t: Double) -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm"
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: Date(timeIntervalSince1970: t))
    }
}
