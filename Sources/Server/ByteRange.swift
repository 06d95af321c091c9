import Foundation

/// One range of a `Range: bytes=…` header, resolved against a file's size (RFC 9110 §14.1.2).
struct ByteRange: Equatable {
    var start: Int
    /// Inclusive.
    var end: Int
    var count: Int { end - start + 1 }

    /// nil when the header is absent or not a single bytes range (the whole file is sent, as
    /// RFC 9110 allows); throws 416 when the range lies past the end.
    static func parse(_ header: String?, size: Int) throws -> ByteRange? {
        guard let header, header.hasPrefix("bytes="), !header.contains(",") else { return nil }
        let spec = header.dropFirst(6).trimmingCharacters(in: .whitespaces)
        guard let dash = spec.firstIndex(of: "-") else { return nil }
        let first = spec[..<dash], last = spec[spec.index(after: dash)...]
        let unsatisfiable = APIError(status: .rangeNotSatisfiable, code: "range_not_satisfiable",
                                     message: "range \(header.prefix(100)) lies outside the file (\(size) bytes)",
                                     headers: [.contentRange: "bytes */\(size)"])
        // Digits only: `Int` also reads "+5".
        guard (first + last).allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        if first.isEmpty {
            guard let n = Int(last), n >= 0 else { return nil }
            guard n > 0, size > 0 else { throw unsatisfiable }
            return ByteRange(start: max(0, size - n), end: size - 1)
        }
        guard let a = Int(first), a >= 0 else { return nil }
        let b: Int
        if last.isEmpty { b = size - 1 } else {
            guard let v = Int(last), v >= a else { return nil }
            b = min(v, size - 1)
        }
        guard a < size else { throw unsatisfiable }
        return ByteRange(start: a, end: b)
    }
}
