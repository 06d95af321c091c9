import Foundation
import LightKV
import Pipeline
import Store

/// `/entries/{id}`: one entry with its spans, compression record, recorded fidelity and the
/// retention map of each stage; with `canWrite`, pin and remove buttons.
struct EntryPage {
    var record: EntryRecord
    var sources: [String]
    var map: RetentionMap
    var canWrite = false

    var spans: [Span] { (try? JSONDecoder().decode([Span].self, from: Data(record.spans.utf8))) ?? [] }

    var html: String {
        let r = record
        func size(_ n: Int) -> String { ByteSize(bytes: n).description }
        var body = "<h1>Entry <span class=\"id\">\(r.id.prefix(16))…</span></h1>"
        let kept = Double(r.entriesKept) / Double(max(1, r.layers * r.seqLen))
        let facts: [(String, String)] = [
            ("id", "<code>\(r.id)</code>"), ("key", HTML.escape(r.producerKey ?? "–")), ("model", HTML.escape(r.model)),
            ("shape", "\(r.layers) layers × \(r.kvHeads) kv heads × head_dim \(r.headDim) (v \(r.vHeadDim)), seq_len \(r.seqLen), \(HTML.escape(r.inputDType))"),
            ("entries kept", "\(r.entriesKept) of \(r.layers * r.seqLen) (\(String(format: "%.1f%%", 100 * kept)))"),
            ("policy", HTML.escape(r.policy)),
            ("bytes", "\(size(r.bytesIn)) in, \(size(r.bytesOut)) stored (\(String(format: "%.2f×", r.ratio)))"),
            ("created", OverviewPage.date(r.createdAt) + " UTC"),
            ("last fetched", r.accessCount > 0 ? OverviewPage.date(r.lastAccessed) + " UTC" : "never"),
            ("fetches", "\(r.accessCount)"), ("pinned", r.pinned ? "yes" : "no"),
            ("sources", sources.isEmpty ? "–" : sources.map { "<a href=\"/?q=\(HTML.urlComponent($0))\"><code>\(HTML.escape($0))</code></a>" }.joined(separator: "<br>")),
            ("download", "<a href=\"/v1/entries/\(r.id)/kvsnap\">kvsnap (F16)</a> · <a href=\"/v1/entries/\(r.id)/kvsnap?expand=1\">expanded</a> · <a href=\"/v1/entries/\(r.id)/pack\">kvpack</a> · <a href=\"/v1/entries/\(r.id)/layout\">layout</a>"),
        ]
        body += HTML.facts(facts)
        if canWrite {
            body += "<p>" + HTML.button(r.pinned ? "unpin" : "pin", action: "/entries/\(r.id)/pin",
                                        fields: [("pinned", r.pinned ? "0" : "1"), ("back", "/entries/\(r.id)")])
                + HTML.button("remove", action: "/entries/\(r.id)/remove", fields: [("back", "/")]) + "</p>"
        }

        body += "<h2>Fidelity recorded at ingest</h2>" + fidelity
        body += "<h2>Retention map</h2>" + retention
        body += "<h2>Spans</h2>"
        body += HTML.table(["#", "kind", "tokens", "role", "grid", "frames", "source"], spans.enumerated().map { i, s in
            ["\(i)", s.kind.rawValue, "\(s.start)–\(s.end) (\(s.count))", s.role?.rawValue ?? "", s.grid.map { "\($0[0])×\($0[1])" } ?? "",
             s.kind == .video ? "\(s.frameCount)" : "", HTML.escape(s.source ?? "")]
        })

        body += "<h2>Compression record</h2>"
        let compression = (try? JSONDecoder().decode([String: String].self, from: Data(r.compression.utf8))) ?? [:]
        body += HTML.table(["setting", "value"], compression.sorted { $0.key < $1.key }.map { ["<code>\(HTML.escape($0.key))</code>", HTML.escape($0.value)] })

        return HTML.page(title: "kvstore · \(r.id.prefix(12))", body)
    }

    /// The attention-output error measured at ingest, with and without the size bias.
    var fidelity: String {
        guard let json = record.fidelity, let value = JSONValue(json: json), case .object(let o) = value else {
            return "<p class=\"muted\">Not measured: the input had no probe queries, or the policy is exact.</p>"
        }
        func number(_ v: JSONValue?) -> String {
            if case .number(let d)? = v { return String(format: "%.5f", d) }
            return "–"
        }
        var rows: [[String]] = []
        for (name, label) in [("proportional", "with log(size) as logit bias (or --expand)"), ("plain", "without")] {
            if case .object(let m)? = o[name] { rows.append([label, number(m["relative_error"]), number(m["cosine"])]) }
        }
        var out = HTML.table(["attention output", "relative error", "cosine"], rows, numeric: [1, 2])
        if case .array(let layers)? = o["layers_measured"] {
            out += "<p>Layers measured: \(layers.map { if case .number(let d) = $0 { return String(Int(d)) } else { return "?" } }.joined(separator: ", "))"
            if case .number(let v)? = o["vision_retention"] { out += String(format: "; vision tokens kept: %.1f%%", 100 * v) }
            out += "</p>"
        }
        if case .string(let e)? = o["error"] { out += "<p>Measuring failed: \(HTML.escape(e))</p>" }
        return out
    }

    /// Per stage, per vision span, the token grid coloured by merged group.
    var retention: String {
        let vision = spans.filter(\.isVision)
        guard !vision.isEmpty else { return "<p class=\"muted\">This entry has no image or video span.</p>" }
        var out = """
            <p class="legend">Each cell is one vision token of the original grid (a video: one grid per frame), coloured by the
            kept entry it was merged into; consecutive layers that kept the same groups are drawn once.
            <span class="alone"></span>kept alone<span class="merged"></span>merged (a colour per group, neighbours never alike)
            <span class="dropped"></span>dropped<span class="unrecorded"></span>merged, members not recorded</p>
            """
        for (i, span) in vision.enumerated() {
            out += "<h3>\(span.kind.rawValue) \(i + 1): \(span.rows)×\(span.cols)\(span.kind == .video ? " × \(span.frameCount) frames" : "")</h3><div class=\"maps\">"
            for stage in map.stages {
                let name = stage.layers.count == 1 ? "layer \(stage.layers.lowerBound)" : "layers \(stage.layers.lowerBound)–\(stage.layers.upperBound)"
                out += "<figure class=\"map\">\(RetentionMap.drawing(stage, span: span))<figcaption>\(name)</figcaption></figure>"
            }
            out += "</div>"
        }
        return out
    }
}
