import Hummingbird
extension StoreResponder {
    func overviewPage(_ query: Query) async throws -> Response { throw APIError.notFound("web") }
    func entryPage(_ id: String) async throws -> Response { throw APIError.notFound("web") }
}
