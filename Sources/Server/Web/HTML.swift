import Foundation
import Store

/// The few pieces of HTML the web pages are made of. Everything from the store is escaped.
enum HTML {
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    /// A query-string value.
    static func urlComponent(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
    }

    /// The pages' only style: one `<style>` element, allowed by its hash in `securityPolicy`
    /// (no `style` attributes, no script, nothing loaded from elsewhere).
    static let stylesheet = """
        *{box-sizing:border-box}
        body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#18181b;background:#fafafa}
        header{background:#18181b;color:#fafafa;padding:10px 24px}header a{color:#fafafa;text-decoration:none;font-weight:600}
        main{padding:16px 24px;max-width:1400px}h1{font-size:20px;margin:8px 0 12px;overflow-wrap:anywhere}h2{font-size:16px;margin:24px 0 8px}
        table{border-collapse:collapse;background:#fff}td,th{border:1px solid #e4e4e7;padding:4px 8px;text-align:left;vertical-align:top}
        th{background:#f4f4f5;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
        th a{color:inherit}th a.on{text-decoration:none}.facts th{width:9em}.facts td{overflow-wrap:anywhere}
        .wide{overflow-x:auto;max-width:100%}.wide td,.wide th{white-space:nowrap}
        code,.id{font-family:ui-monospace,monospace;font-size:13px}.cards{display:flex;gap:12px;flex-wrap:wrap;align-items:flex-start}
        .card{background:#fff;border:1px solid #e4e4e7;padding:10px 14px;min-width:130px}.card b{display:block;font-size:20px}
        form{margin:12px 0}input[type=search]{padding:5px 8px;width:min(320px,100%)}button{padding:5px 12px}
        form.act{display:inline;margin:0 4px 0 0}form.act button{padding:1px 8px;font-size:12px}
        .maps{display:flex;gap:18px;flex-wrap:wrap}.map{background:#fff;border:1px solid #e4e4e7;padding:8px;margin:0;max-width:100%}h3{font-size:14px;margin:14px 0 6px}
        .frames{display:flex;gap:6px;flex-wrap:wrap}.frames figure{margin:0}.frames figcaption{font-size:11px;color:#71717a}
        .legend span{display:inline-block;width:12px;height:12px;vertical-align:middle;margin:0 4px 0 12px}
        .muted{color:#71717a}.pages a,.pages b{margin-right:10px}
        .legend .alone{background:#e4e4e7}.legend .merged{background:#4e79a7}.legend .dropped{background:#27272a}.legend .unrecorded{background:#a1a1aa}
        """

    /// `Content-Security-Policy` of every page: nothing runs, nothing is fetched, the page
    /// cannot be framed; the stylesheet above is allowed by its SHA-256.
    static let securityPolicy: String = {
        let hash = Array(stylesheet.utf8).withUnsafeBytes { SHA256Hasher.digest($0) }
        return "default-src 'none'; style-src 'sha256-\(Data(hash).base64EncodedString())'; img-src 'self' data:; "
            + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    }()

    static func page(title: String, _ body: String) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(escape(title))</title>
        <style>\(stylesheet)</style></head>
        <body><header><a href="/">kvstore</a></header><main>
        \(body)
        </main></body></html>
        """
    }

    /// A table with escaped header cells; `rows` are already HTML.
    static func table(_ headers: [String], _ rows: [[String]], numeric: Set<Int> = []) -> String {
        table(headerCells: headers.map(escape), rows, numeric: numeric)
    }

    /// A table whose header cells are already HTML (links, for a sortable column), in a box
    /// that scrolls sideways by itself when the table is wider than the window, so the page
    /// never does.
    static func table(headerCells: [String], _ rows: [[String]], numeric: Set<Int> = []) -> String {
        var out = "<div class=\"wide\"><table><thead><tr>" + headerCells.map { "<th>\($0)</th>" }.joined() + "</tr></thead><tbody>"
        for row in rows {
            out += "<tr>" + row.enumerated().map { i, v in numeric.contains(i) ? "<td class=\"n\">\(v)</td>" : "<td>\(v)</td>" }.joined() + "</tr>"
        }
        return out + "</tbody></table></div>"
    }

    /// Label and value pairs, one row each, the label as a row header (no header row).
    /// Labels are escaped; values are already HTML.
    static func facts(_ rows: [(String, String)]) -> String {
        "<table class=\"facts\"><tbody>" + rows.map { "<tr><th scope=\"row\">\(escape($0.0))</th><td>\($0.1)</td></tr>" }.joined()
            + "</tbody></table>"
    }

    /// A button that posts to `action` (a form endpoint of the web pages, docs/design/serve.md),
    /// with `fields` as hidden inputs.
    static func button(_ label: String, action: String, fields: [(String, String)] = []) -> String {
        "<form class=\"act\" method=\"post\" action=\"\(escape(action))\">"
            + fields.map { "<input type=\"hidden\" name=\"\(escape($0.0))\" value=\"\(escape($0.1))\">" }.joined()
            + "<button type=\"submit\">\(escape(label))</button></form>"
    }
}

