import Foundation
import Hummingbird
import Store

/// `POST /v1/match`: the lookup a serving node makes before prefill (`kvstore match`).
extension StoreResponder {
    /// The request body: the model, the request's token ids, and (optional) its media sources
    /// in order. Posted rather than put in a query: a video request holds thousands of ids.
    struct MatchRequest: Decodable {
        var model: String
        var inputIDs: [Int64]
        var sources: [String]?

        enum CodingKeys: String, CodingKey { case model, inputIDs = "input_ids", sources }
    }

    /// Largest body a match takes: 1M ids written as JSON numbers.
    static let matchBodyLimit = 16 << 20

    func match(_ request: Request) async throws -> Response {
        let body: ByteBuffer
        do { body = try await request.body.collect(upTo: Self.matchBodyLimit) } catch {
            throw APIError(status: .contentTooLarge, code: "too_large", message: "a match body is at most \(Self.matchBodyLimit) bytes")
        }
        let asked: MatchRequest
        do { asked = try JSONDecoder().decode(MatchRequest.self, from: Data(buffer: body)) } catch {
            throw APIError.badRequest("the body is not {\"model\": string, \"input_ids\": [non-negative integers], \"sources\": [strings]} (\(Self.describe(error)))")
        }
        if let i = asked.inputIDs.firstIndex(where: { $0 < 0 }) {
            throw APIError.badRequest("input_ids[\(i)] is \(asked.inputIDs[i]): token ids are non-negative")
        }
        let found = try await pool.run { root in
            try root.index.longestPrefix(model: asked.model, ids: asked.inputIDs, sources: asked.sources ?? [])
        }
        guard let found else {
            throw APIError.notFound("no stored prefix of model \(asked.model.prefix(200)) matches these \(asked.inputIDs.count) ids")
        }
        return try Self.json(found)
    }

    /// A decoding error in a few words.
    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): "\(key.stringValue) is missing"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            "\(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)"
        case DecodingError.dataCorrupted(let c): c.debugDescription
        default: "\(error)"
        }
    }
}
