import AsyncHTTPClient
import Foundation
import NIOCore
import Store

/// Ranged GETs into memory, for reading a part of an object without downloading all of it.
extension S3Client {
    /// The bytes of object `key` in `range`, and the object's whole size.
    public func read(_ key: String, range: Range<Int>) throws -> (bytes: [UInt8], objectSize: Int) {
        precondition(!range.isEmpty && range.lowerBound >= 0)
        return try read(key, rangeHeader: "bytes=\(range.lowerBound)-\(range.upperBound - 1)", wanted: { _ in range })
    }

    /// The last `count` bytes of object `key` (all of it when it is smaller), and its whole size.
    public func readLast(_ count: Int, of key: String) throws -> (bytes: [UInt8], objectSize: Int) {
        precondition(count > 0)
        return try read(key, rangeHeader: "bytes=-\(count)", wanted: { size in max(0, size - count)..<size })
    }

    /// Sends a ranged GET. A 206 answer must say, in Content-Range, that it holds exactly the
    /// bytes wanted; a server that ignores the range answers 200 with the whole object, which
    /// is cut to them.
    private func read(_ key: String, rangeHeader: String, wanted: (Int) -> Range<Int>) throws -> (bytes: [UInt8], objectSize: Int) {
        let url = location.url(ofKey: key)
        let response = try send("GET", key: key, headers: ["range": rangeHeader])
        let body = response.body.map { Array($0.readableBytesView) } ?? []
        if response.status == .ok {
            let range = wanted(body.count)
            guard range.upperBound <= body.count else {
                throw StoreError.io(path: url, operation: "GET \(rangeHeader) (the object has only \(body.count) bytes)", errno: EIO)
            }
            return (Array(body[range]), body.count)
        }
        // Content-Range: bytes FIRST-LAST/SIZE
        guard let text = response.headers.first(name: "content-range"), text.hasPrefix("bytes "),
              case let parts = text.dropFirst(6).split(whereSeparator: { $0 == "-" || $0 == "/" }).compactMap({ Int($0) }), parts.count == 3,
              parts[0] == wanted(parts[2]).lowerBound, parts[1] + 1 == wanted(parts[2]).upperBound, body.count == parts[1] + 1 - parts[0] else {
            throw StoreError.io(path: url, operation: "GET \(rangeHeader) (answered \(body.count) bytes with Content-Range \(response.headers.first(name: "content-range") ?? "absent"))", errno: EIO)
        }
        return (body, parts[2])
    }
}
