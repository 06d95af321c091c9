import Foundation
import Store

/// One page of a ListObjectsV2 answer. The XML is read by element name: S3's answer is flat,
/// and the keys this store writes hold only hex digits, dots and slashes.
public struct S3Listing {
    public struct Object: Sendable, Equatable {
        public var key: String
        public var bytes: Int
        /// Last-Modified, seconds since 1970 by the server's clock.
        public var modified: Double
        /// Seconds from `modified` to the server's answer, by the server's clock
        /// (`answered(at:)`; until then 0).
        public var age: Double = 0
    }

    public var objects: [Object] = []
    /// The continuation token when the listing is truncated.
    public var nextToken: String?

    public init(xml: String, url: String) throws {
        for block in Self.blocks("Contents", in: xml) {
            guard let key = Self.firstValue(of: "Key", in: block), let bytes = Self.firstValue(of: "Size", in: block).flatMap(Int.init),
                  let modified = Self.firstValue(of: "LastModified", in: block).flatMap(S3Dates.isoDate) else {
                throw StoreError.io(path: url, operation: "LIST (an entry without Key, Size or LastModified: \(block.prefix(200)))", errno: EIO)
            }
            objects.append(Object(key: key, bytes: bytes, modified: modified.timeIntervalSince1970))
        }
        if Self.firstValue(of: "IsTruncated", in: xml) == "true" {
            guard let token = Self.firstValue(of: "NextContinuationToken", in: xml) else {
                throw StoreError.io(path: url, operation: "LIST (truncated, but no NextContinuationToken)", errno: EIO)
            }
            nextToken = token
        }
    }

    /// Sets each object's age from the time the server answered (its `Date`).
    public mutating func answered(at serverTime: Double) {
        for i in objects.indices { objects[i].age = serverTime - objects[i].modified }
    }

    /// The text of each `<name>…</name>` element, in order.
    static func blocks(_ name: String, in xml: String) -> [String] {
        var found: [String] = []
        var rest = xml[...]
        while let open = rest.range(of: "<\(name)>"), let close = rest.range(of: "</\(name)>", range: open.upperBound..<rest.endIndex) {
            found.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return found
    }

    /// The unescaped text of the first `<name>` element.
    static func firstValue(of name: String, in xml: String) -> String? {
        blocks(name, in: xml).first.map { text in
            [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&apos;", "'"), ("&amp;", "&")]
                .reduce(text) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
        }
    }
}

/// The two date forms S3 answers with.
enum S3Dates {
    /// `Last-Modified: Wed, 12 Oct 2009 17:50:00 GMT` (RFC 7231).
    static func httpDate(_ text: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f.date(from: text)
    }

    /// `<LastModified>2009-10-12T17:50:30.000Z</LastModified>` (ISO 8601, fraction optional).
    static func isoDate(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: text) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: text)
    }
}
