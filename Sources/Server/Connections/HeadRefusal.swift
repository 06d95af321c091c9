import Foundation
import NIOHTTP1

/// The answer to a request whose head cannot be parsed (a bad `Content-Length`, a head larger
/// than the decoder accepts, a line that is not HTTP): `{"error", "code"}` like every other
/// error, naming what was wrong, where the HTTP/1 channel would answer a bare 400. Written by
/// `ConnectionWatch.RequestPhases`, which sees the decoder's error before the channel does.
enum HeadRefusal {
    static func answer(_ error: HTTPParserError) -> (status: HTTPResponseStatus, message: String) {
        switch error {
        case .headerOverflow:
            return (.requestHeaderFieldsTooLarge,
                    "the request's head (request line and headers) is larger than this server reads: send a shorter URL or fewer, shorter headers")
        case .invalidContentLength:
            return (.badRequest, "Content-Length is not one non-negative decimal number (or two differ)")
        case .unexpectedContentLength:
            return (.badRequest, "Content-Length and Transfer-Encoding: chunked together: send one of them")
        case .invalidVersion:
            return (.badRequest, "the request is not HTTP/1.0 or HTTP/1.1")
        default:
            return (.badRequest, "the request is not valid HTTP/1.1 (\(error)): its request line or headers could not be read "
                    + "(a line without CRLF, a header name with spaces, or Content-Length beside Transfer-Encoding)")
        }
    }

    /// The whole response: a JSON body, `Connection: close`.
    static func response(_ error: HTTPParserError) -> (head: HTTPResponseHead, body: String) {
        let (status, message) = answer(error)
        // Spelled as every other error body is (`StoreResponder.error`).
        let body = (try? StoreResponder.jsonEncoder.encode(["code": "bad_request", "error": message])) ?? Data(#"{"code":"bad_request"}"#.utf8)
        let text = String(decoding: body, as: UTF8.self) + "\n"
        let headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", String(text.utf8.count)),
                                   ("Connection", "close"), ("X-Content-Type-Options", "nosniff")])
        return (HTTPResponseHead(version: .http1_1, status: status, headers: headers), text)
    }
}
