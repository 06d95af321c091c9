import Foundation
import Hummingbird
import LightKV
import NIOHTTP1
import Pipeline
import Store

/// An error answered as `{"error": MESSAGE, "code": CODE}` (docs/openapi.yaml, `Error`).
struct APIError: Error, CustomStringConvertible {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    var headers: HTTPFields = [:]

    var description: String { message }

    static func badRequest(_ message: String) -> APIError { APIError(status: .badRequest, code: "bad_request", message: message) }
    static func notFound(_ message: String) -> APIError { APIError(status: .notFound, code: "not_found", message: message) }

    /// The answer for an error raised anywhere below: the same message the CLI prints, the
    /// status that matches its exit code. A server-side failure names no file of the server
    /// (the log has the full message); a damaged blob is named by its `entry`, the id asked for.
    static func from(_ error: Error, entry: String? = nil) -> APIError {
        switch error {
        case let e as APIError: return e
        case let e as StoreError:
            switch e {
            case .notFound: return APIError(status: .notFound, code: "not_found", message: "\(e)")
            case .ambiguous: return APIError(status: .conflict, code: "ambiguous", message: "\(e)")
            case .invalidSnapshot: return APIError(status: .unprocessableContent, code: "invalid", message: "\(e)")
            case .badPolicy: return APIError(status: .badRequest, code: "bad_request", message: "\(e)")
            case .corrupt:
                return APIError(status: .internalServerError, code: "corrupt",
                                message: "entry \(entry ?? "?") is damaged: its stored pack failed a check and is not served (the server's log has the details)")
            case .io(_, let operation, let errno):
                let message = "the store: \(operation) failed: \(String(cString: strerror(errno)))"
                if e.isTransient { return APIError(status: .serviceUnavailable, code: "transient", message: message, headers: [.retryAfter: "5"]) }
                return APIError(status: .internalServerError, code: "internal", message: message)
            case .database:
                if e.isTransient {
                    return APIError(status: .serviceUnavailable, code: "transient", message: "\(e)", headers: [.retryAfter: "5"])
                }
                return APIError(status: .internalServerError, code: "internal", message: "\(e)")
            }
        case let e as DamagedSegment:
            return APIError(status: .internalServerError, code: "corrupt",
                            message: "entry \(entry ?? "?") is damaged: its shared prefix segment \(e.name) failed a check and is not served, nor is any entry naming it (the server's log has the details)")
        case let e as HTTPParserError:
            return .badRequest("the request is not valid HTTP/1.1 (\(e)): a chunked body needs hexadecimal chunk sizes, and each header one line")
        case let e as PolicyError: return .badRequest("\(e)")
        case let e as FetchError: return APIError(status: .unprocessableContent, code: "invalid", message: "\(e)")
        case let e as KVSnapError: return APIError(status: .unprocessableContent, code: "invalid", message: "\(e)")
        default: return APIError(status: .internalServerError, code: "internal", message: "\(error)")
        }
    }
}
