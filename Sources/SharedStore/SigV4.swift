import Foundation
import Store

/// AWS Signature Version 4 for header-signed requests (the AWS documentation's "Signature
/// Version 4 signing process"), checked against its published test suite and the S3 API
/// reference's examples (`SigV4Tests`).
///
/// The caller gives the request as it will be sent: the path already URI-encoded (S3 does
/// not encode it twice), the query unencoded, and the headers to sign, which must include
/// `host` and `x-amz-date` (and for S3 `x-amz-content-sha256`).
public struct SigV4: Sendable {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var region: String
    public var service: String

    public init(accessKeyID: String, secretAccessKey: String, region: String, service: String = "s3") {
        self.accessKeyID = accessKeyID; self.secretAccessKey = secretAccessKey
        self.region = region; self.service = service
    }

    /// The `x-amz-date` value for `date`: `20150830T123600Z`.
    public static func amzDate(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return f.string(from: date)
    }

    /// The `Authorization` header value.
    public func authorization(method: String, path: String, query: [(String, String)], headers: [String: String], payloadHash: String) -> String {
        let (request, signed) = canonicalRequest(method: method, path: path, query: query, headers: headers, payloadHash: payloadHash)
        let date = headers.first { $0.key.lowercased() == "x-amz-date" }?.value ?? ""
        let scope = "\(date.prefix(8))/\(region)/\(service)/aws4_request"
        let toSign = "AWS4-HMAC-SHA256\n\(date)\n\(scope)\n\(Self.sha256Hex(request))"
        var key = Array("AWS4\(secretAccessKey)".utf8)
        for part in [String(date.prefix(8)), region, service, "aws4_request"] { key = Self.hmac(key, part) }
        let signature = Self.hmac(key, toSign).hexString
        return "AWS4-HMAC-SHA256 Credential=\(accessKeyID)/\(scope), SignedHeaders=\(signed), Signature=\(signature)"
    }

    /// The canonical request and the signed-header list.
    public func canonicalRequest(method: String, path: String, query: [(String, String)], headers: [String: String], payloadHash: String) -> (String, String) {
        let encoded: [(name: String, value: String)] = query.map { (Self.encode($0.0), Self.encode($0.1)) }
        let sortedQuery = encoded.sorted { a, b in a.name == b.name ? a.value < b.value : a.name < b.name }
        let canonicalQuery = sortedQuery.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
        // Names lowercased, values trimmed with inner runs of spaces collapsed.
        let canonicalHeaders: [(name: String, value: String)] = headers.map { name, value in
            (name.lowercased(), value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " "))
        }.sorted { a, b in a.name < b.name }
        let signed = canonicalHeaders.map(\.name).joined(separator: ";")
        var lines: [String] = [method, path.isEmpty ? "/" : path, canonicalQuery]
        lines += canonicalHeaders.map { "\($0.name):\($0.value)" }
        lines += ["", signed, payloadHash]
        return (lines.joined(separator: "\n"), signed)
    }

    /// RFC 3986 percent-encoding of everything but `A-Z a-z 0-9 - . _ ~` (and `/` when
    /// `keepSlash`, for paths).
    public static func encode(_ text: String, keepSlash: Bool = false) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(Character(UnicodeScalar(byte)))
            case UInt8(ascii: "/") where keepSlash: out.append("/")
            default: out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    public static func sha256Hex(_ text: String) -> String {
        var h = SHA256Hasher()
        h.update(text)
        return h.finish().hexString
    }

    /// HMAC-SHA256 (RFC 2104) over SHA-256's 64-byte block.
    static func hmac(_ key: [UInt8], _ message: String) -> [UInt8] {
        var block = key.count > 64 ? key.withUnsafeBytes { SHA256Hasher.digest($0) } : key
        block += [UInt8](repeating: 0, count: 64 - block.count)
        var inner = SHA256Hasher()
        block.map { $0 ^ 0x36 }.withUnsafeBytes { inner.update($0) }
        inner.update(message)
        let innerDigest = inner.finish()
        var outer = SHA256Hasher()
        block.map { $0 ^ 0x5c }.withUnsafeBytes { outer.update($0) }
        innerDigest.withUnsafeBytes { outer.update($0) }
        return outer.finish()
    }
}
