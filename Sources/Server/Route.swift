import Hummingbird

/// The resources `kvstore serve` answers (docs/openapi.yaml), parsed from a request path.
///
/// Each path segment is percent-decoded on its own; a segment that decodes to `.`, `..`, or
/// to anything holding `/`, a NUL or a backslash is refused before any route is chosen, so
/// no request names a file outside the store.
enum Route: Equatable {
    case overview, entryPage(String), openapi, health, metrics
    /// The web pages' buttons: plain HTML form posts (docs/design/serve.md, "Web pages").
    case pinForm(String), removeForm(String)
    case list, entry(String), key(String), kvsnap(String), pack(String), layout(String), pin(String), upload
    /// The longest stored prefix of a request (`kvstore match`).
    case match

    init?(path: String) throws {
        var segments: [String] = []
        for raw in path.split(separator: "/", omittingEmptySubsequences: false).dropFirst() {
            guard let s = raw.removingPercentEncoding else {
                throw APIError.badRequest("path segment \"\(raw.prefix(80))\" is not valid percent-encoding")
            }
            if s == "." || s == ".." || s.contains("/") || s.contains("\\") || s.contains("\0") {
                throw APIError.badRequest("path segment \"\(raw.prefix(80))\" is not allowed (no ., .., or encoded slashes)")
            }
            segments.append(s)
        }
        // A page's trailing slash is dropped; the API's is not, so `/v1/entries/` names an
        // entry with an empty id (400), never the list.
        if segments.last == "" && segments.count > 1 && segments.first != "v1" { segments.removeLast() }
        switch segments.count {
        case 1:
            switch segments[0] {
            case "": self = .overview
            case "openapi.yaml": self = .openapi
            case "healthz": self = .health
            case "metrics": self = .metrics
            default: return nil
            }
        case 2:
            switch (segments[0], segments[1]) {
            case ("v1", "entries"): self = .list
            case ("v1", "snapshots"): self = .upload
            case ("v1", "match"): self = .match
            case ("entries", let id): self = .entryPage(try Self.id(id))
            default: return nil
            }
        case 3:
            switch (segments[0], segments[1]) {
            case ("v1", "entries"): self = .entry(try Self.id(segments[2]))
            case ("entries", let id):
                switch segments[2] {
                case "pin": self = .pinForm(try Self.id(id))
                case "remove": self = .removeForm(try Self.id(id))
                default: return nil
                }
            case ("v1", "keys"):
                guard !segments[2].isEmpty, segments[2].utf8.count <= 1024 else {
                    throw APIError.badRequest("key of \(segments[2].utf8.count) bytes: expected 1 to 1024")
                }
                self = .key(segments[2])
            default: return nil
            }
        case 4:
            guard segments[0] == "v1", segments[1] == "entries" else { return nil }
            let id = try Self.id(segments[2])
            switch segments[3] {
            case "kvsnap": self = .kvsnap(id)
            case "pack": self = .pack(id)
            case "layout": self = .layout(id)
            case "pin": self = .pin(id)
            default: return nil
            }
        default: return nil
        }
    }

    /// An id or id prefix: 1 to 64 hex digits, lowercased.
    static func id(_ text: String) throws -> String {
        guard (1...64).contains(text.utf8.count), text.allSatisfy(\.isHexDigit) else {
            throw APIError.badRequest("id \"\(text.prefix(80))\(text.count > 80 ? "…" : "")\" is not an id or id prefix (1 to 64 hex digits)")
        }
        return text.lowercased()
    }

    /// The route's name in metrics and logs (the OpenAPI path).
    var template: String {
        switch self {
        case .overview: "/"
        case .entryPage: "/entries/{id}"
        case .pinForm: "/entries/{id}/pin"
        case .removeForm: "/entries/{id}/remove"
        case .openapi: "/openapi.yaml"
        case .health: "/healthz"
        case .metrics: "/metrics"
        case .list: "/v1/entries"
        case .entry: "/v1/entries/{id}"
        case .key: "/v1/keys/{key}"
        case .kvsnap: "/v1/entries/{id}/kvsnap"
        case .pack: "/v1/entries/{id}/pack"
        case .layout: "/v1/entries/{id}/layout"
        case .pin: "/v1/entries/{id}/pin"
        case .upload: "/v1/snapshots"
        case .match: "/v1/match"
        }
    }

    /// The entry id (or id prefix) the route names, if it names one.
    var entryID: String? {
        switch self {
        case .entryPage(let id), .pinForm(let id), .removeForm(let id), .entry(let id), .kvsnap(let id), .pack(let id), .layout(let id), .pin(let id): id
        default: nil
        }
    }

    /// The query parameters the route takes (docs/openapi.yaml), any other refused; nil where
    /// others are let through unread (a proxy's signature on a listing, say).
    var parameters: [String]? {
        switch self {
        case .kvsnap: ["dtype", "expand", "prefix"]
        case .pack, .layout: ["segment"]
        default: nil
        }
    }

    /// A web page (for people, in a browser) rather than an API resource.
    var isPage: Bool {
        switch self {
        case .overview, .entryPage, .pinForm, .removeForm: true
        default: false
        }
    }

    /// The body is streamed from the store (and counts its bytes as it goes).
    var streams: Bool {
        switch self {
        case .kvsnap, .pack: true
        default: false
        }
    }

    /// Methods the route answers.
    var methods: [HTTPRequest.Method] {
        switch self {
        case .entry: [.get, .delete]
        case .pin, .pinForm, .removeForm, .match: [.post]
        case .upload: [.put]
        default: [.get]
        }
    }

    /// The scope a token needs; nil for routes open to anyone (health checks, the API document).
    func scope(for method: HTTPRequest.Method) -> Scope? {
        switch self {
        case .health, .openapi: nil
        case .match: .read  // a lookup, posted only because the ids are long
        default: method == .get || method == .head ? .read : .write
        }
    }
}
