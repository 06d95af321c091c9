import Foundation
import Hummingbird
import Pipeline
import Store

/// The web pages: HTML and SVG rendered here, no script needed.
extension StoreResponder {
    func overviewPage(_ query: Query) async throws -> Response {
        let q = String((query["q"] ?? "").trimmingCharacters(in: .whitespaces).prefix(1024))
        let html = try await pool.run { root in
            OverviewPage(stats: try StoreStats(root: root), query: q, entries: try root.index.search(q, limit: 500), limit: 500).html
        }
        return Self.html(html)
    }

    func entryPage(_ id: String) async throws -> Response {
        let html = try await pool.run { root in
            let (record, pack) = try Fetcher(root: root).open(try root.index.resolve(id))
            return EntryPage(record: record, sources: try root.index.sources(of: record.id), map: try RetentionMap(pack: pack)).html
        }
        return Self.html(html)
    }

    static func html(_ text: String) -> Response {
        Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .contentSecurityPolicy: HTML.securityPolicy], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
