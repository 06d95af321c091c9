import Foundation
import Hummingbird
import NIOCore
import Pipeline
import Store

/// The web pages: HTML and SVG rendered here, no script needed; their buttons are plain
/// HTML forms that post to `/entries/{id}/pin` and `/entries/{id}/remove`.
extension StoreResponder {
    func overviewPage(_ query: Query, canWrite: Bool) async throws -> Response {
        let listing = EntryListing(query: query)
        let html = try await pool.run { root in
            let (entries, total) = try listing.run(root.index)
            return OverviewPage(stats: try StoreStats(root: root), listing: listing, entries: entries, total: total, canWrite: canWrite).html
        }
        return Self.html(html)
    }

    func entryPage(_ id: String, canWrite: Bool) async throws -> Response {
        let html = try await pool.run { root in
            let fetcher = Fetcher(root: root)
            let (record, pack) = try fetcher.open(try root.index.resolve(id))
            let map = try RetentionMap(pack: pack, segment: try Self.namingSegment(of: record, in: root) { try fetcher.segment(of: record, pack: pack) })
            return EntryPage(record: record, sources: try root.index.sources(of: record.id), map: map,
                             canWrite: canWrite).html
        }
        return Self.html(html)
    }

    /// The pin button: `pinned=1` or `0`, then back to the page it was pressed on.
    func pinForm(_ id: String, _ request: Request) async throws -> Response {
        let form = try await Self.form(request)
        _ = try await pin(id, ["pinned": form["pinned"] == "0" ? "false" : "true"])
        return Self.seeOther(form["back"], otherwise: "/entries/\(id)")
    }

    /// The remove button, then back to the index (or the page it was pressed on).
    func removeForm(_ id: String, _ request: Request) async throws -> Response {
        let form = try await Self.form(request)
        _ = try await remove(id)
        return Self.seeOther(form["back"], otherwise: "/")
    }

    /// A form post's fields, once it is shown to come from this server's own pages.
    ///
    /// A browser sends the credentials it holds for this server (HTTP Basic) with a form
    /// posted from any site, so the post must say where it comes from: `Origin` naming this
    /// server (as the request's `Host` does), or without one `Sec-Fetch-Site: same-origin`.
    /// Every browser sends one of the two with a form post; a post from elsewhere is 403.
    static func form(_ request: Request) async throws -> [String: String] {
        let host = request.head.authority ?? ""
        let sameOrigin: Bool
        if let origin = request.headers[.origin] {
            sameOrigin = origin.split(separator: "/", omittingEmptySubsequences: true).dropFirst().first.map(String.init) == host
                && (origin.hasPrefix("http://") || origin.hasPrefix("https://"))
        } else {
            sameOrigin = request.headers.first { $0.name.canonicalName == "sec-fetch-site" }?.value == "same-origin"
        }
        guard sameOrigin, !host.isEmpty else {
            throw APIError(status: .forbidden, code: "forbidden",
                           message: "a form post is accepted only from this server's own pages (Origin or Sec-Fetch-Site); use the API (/v1) elsewhere")
        }
        var fields: [String: String] = [:]
        let body: ByteBuffer
        do { body = try await request.body.collect(upTo: 4096) } catch {
            // Hummingbird's "too many bytes" is not an internal error: the form is too long.
            throw APIError(status: .contentTooLarge, code: "too_large", message: "a form post holds at most 4096 bytes")
        }
        for pair in String(buffer: body).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { $0.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            if let name = parts.first, fields[name] == nil { fields[name] = parts.count > 1 ? parts[1] : "" }
        }
        return fields
    }

    /// 303 to `back` when it is a path on this server, else to `otherwise`.
    static func seeOther(_ back: String?, otherwise: String) -> Response {
        // A path of this server only: browsers drop tabs and line breaks, so "/\t/evil" would
        // be "//evil", another host.
        let safe = back.flatMap { b in
            b.hasPrefix("/") && !b.hasPrefix("//") && !b.contains("\\") && !b.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F } ? b : nil
        }
        return Response(status: .seeOther, headers: [.location: safe ?? otherwise])
    }

    static func html(_ text: String) -> Response {
        Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .contentSecurityPolicy: HTML.securityPolicy], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
