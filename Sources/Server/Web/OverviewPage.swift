import Foundation
import Pipeline
import Store

/// `/`: the store at a glance and a searchable table of its entries.
struct OverviewPage {
    var stats: StoreStats
    var query: String
    var entries: [EntryRecord]
    var limit: Int

    var html: String {
        func size(_ n: Int) -> String { ByteSize(bytes: n).description }
        var body = "<h1>The store</h1><div class=\"cards\">"
        for (label, value) in [("entries", "\(stats.entries)"), ("bytes in", size(stats.bytesIn)), ("bytes stored", size(stats.bytesOut)),
                               ("ratio", String(format: "%.2f×", stats.ratio)), ("pinned", "\(stats.pinned)"), ("image sources", "\(stats.sources)")] {
            body += "<div class=\"card\"><span class=\"muted\">\(label)</span><b>\(HTML.escape(value))</b></div>"
        }
        body += "</div>"
        body += "<h2>Models and policies</h2><div class=\"cards\">"
        body += HTML.table(["model", "entries"], stats.models.sorted { $0.key < $1.key }.map { [HTML.escape($0.key), "\($0.value)"] }, numeric: [1])
        body += HTML.table(["policy", "entries"], stats.policies.sorted { $0.key < $1.key }.map { [HTML.escape($0.key), "\($0.value)"] }, numeric: [1])
        body += "</div>"
        body += """
            <h2>Entries</h2>
            <form method="get" action="/"><input type="search" name="q" value="\(HTML.escape(query))" placeholder="key, model, source or id prefix" aria-label="search">
            <button type="submit">Search</button></form>
            """
        let rows = entries.map { r in
            ["<a class=\"id\" href=\"/entries/\(r.id)\">\(r.id.prefix(12))</a>", HTML.escape(r.producerKey ?? "–"), HTML.escape(r.model),
             HTML.escape(r.policy), "\(r.layers)", size(r.bytesIn), size(r.bytesOut), String(format: "%.2f×", r.ratio),
             Self.date(r.createdAt), "\(r.accessCount)", r.pinned ? "yes" : ""]
        }
        body += HTML.table(["id", "key", "model", "policy", "layers", "in", "stored", "ratio", "created (UTC)", "fetches", "pinned"],
                           rows, numeric: [4, 5, 6, 7, 9])
        if entries.count >= limit { body += "<p class=\"muted\">The newest \(limit) shown; search to narrow.</p>" }
        if entries.isEmpty { body += "<p class=\"muted\">No entry matches.</p>" }
        return HTML.page(title: "kvstore", body)
    }

    static func date(_ t: Double) -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm"
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: Date(timeIntervalSince1970: t))
    }
}
