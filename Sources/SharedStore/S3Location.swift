import Foundation

/// Where a store's blobs live in S3, and how to reach them: `s3://BUCKET[/PREFIX]` with the
/// endpoint, region and credentials from a store config or the usual `AWS_*` variables (docs/DESIGN.md,
/// "Store URL and config"). Requests use path-style addressing, `ENDPOINT/BUCKET/KEY`.
public struct S3Location: Sendable, Equatable {
    public var bucket: String
    /// Key prefix without leading or trailing slashes; may be empty.
    public var prefix: String
    /// `scheme://host[:port]`, no path.
    public var endpoint: URL
    public var region: String
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    /// An access key, its secret, and for temporary credentials the session token.
    public struct Credentials: Sendable, Equatable {
        public var accessKeyID: String
        public var secretAccessKey: String
        public var sessionToken: String?

        public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
            self.accessKeyID = accessKeyID
            self.secretAccessKey = secretAccessKey
            self.sessionToken = sessionToken
        }
    }

    /// Parses `url` and reads the rest from `environment`.
    public init(url: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        try self.init(url: url, endpoint: nil, region: nil, credentials: nil, environment: environment)
    }

    /// Parses `url`; each setting given (a store config's `[blobs]` table) wins, each one nil is
    /// read from `environment` as `init(url:environment:)` does. Credentials go as a whole:
    /// given ones never mix with the environment's.
    public init(url: String, endpoint: String?, region: String?, credentials: Credentials?,
                environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard url.hasPrefix("s3://") else { throw S3SettingError.badURL(url, problem: "it does not start with s3://") }
        let rest = url.dropFirst(5)
        let bucket = String(rest.prefix { $0 != "/" })
        // Bucket naming rules (S3 API reference): 3-63 of a-z 0-9 . -, starting and ending alphanumeric.
        guard (3...63).contains(bucket.count), bucket.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "." || $0 == "-") }),
              bucket.first!.isLetter || bucket.first!.isNumber, bucket.last!.isLetter || bucket.last!.isNumber else {
            throw S3SettingError.badURL(url, problem: "bucket \"\(bucket)\" is not 3-63 characters of a-z, 0-9, '.' and '-'")
        }
        self.bucket = bucket
        prefix = rest.dropFirst(bucket.count).split(separator: "/").joined(separator: "/")
        func setting(_ names: String...) -> String? { names.lazy.compactMap { environment[$0] }.first { !$0.isEmpty } }
        self.region = region ?? setting("AWS_REGION", "AWS_DEFAULT_REGION") ?? "us-east-1"
        let fromEnvironment = endpoint == nil ? setting("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL") : nil
        let endpointText = endpoint ?? fromEnvironment ?? "https://s3.\(self.region).amazonaws.com"
        guard let parsed = URL(string: endpointText), let scheme = parsed.scheme, ["http", "https"].contains(scheme),
              parsed.host != nil, parsed.path.isEmpty || parsed.path == "/", parsed.query == nil else {
            throw S3SettingError.badEndpoint(endpointText, from: fromEnvironment == nil ? nil : "AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL")
        }
        self.endpoint = URL(string: "\(scheme)://\(parsed.host!)\(parsed.port.map { ":\($0)" } ?? "")")!
        if let credentials {
            accessKeyID = credentials.accessKeyID
            secretAccessKey = credentials.secretAccessKey
            sessionToken = credentials.sessionToken
        } else {
            guard let key = setting("AWS_ACCESS_KEY_ID") else { throw S3SettingError.missing("AWS_ACCESS_KEY_ID") }
            guard let secret = setting("AWS_SECRET_ACCESS_KEY") else { throw S3SettingError.missing("AWS_SECRET_ACCESS_KEY") }
            accessKeyID = key
            secretAccessKey = secret
            sessionToken = setting("AWS_SESSION_TOKEN")
        }
    }

    /// The object key of a path under the prefix (`blobs/ab/<name>.kvpack`).
    public func key(_ path: String) -> String { prefix.isEmpty ? path : "\(prefix)/\(path)" }

    /// `s3://BUCKET/KEY`, for messages.
    public func url(ofKey key: String) -> String { "s3://\(bucket)/\(key)" }

    /// The `host` header: the endpoint's host, with its port when not the scheme's default.
    var hostHeader: String {
        let port = endpoint.port.flatMap { ($0 == 443 && endpoint.scheme == "https") || ($0 == 80 && endpoint.scheme == "http") ? nil : $0 }
        return endpoint.host! + (port.map { ":\($0)" } ?? "")
    }
}

/// A store URL or S3 setting kvstore cannot use (CLI exit code 1).
public enum S3SettingError: Error, CustomStringConvertible {
    case badURL(String, problem: String)
    /// The value, and the variables it came from (nil: given explicitly, or the default).
    case badEndpoint(String, from: String?)
    case missing(String)

    public var description: String {
        switch self {
        case .badURL(let url, let problem): "store URL \(url): \(problem)"
        case .badEndpoint(let value, let from): "S3 endpoint \"\(value)\"\(from.map { " (\($0))" } ?? "") is not http(s)://HOST[:PORT]"
        case .missing(let name): "S3 store: \(name) is not set (the access key and secret come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a store config's [blobs] table)"
        }
    }
}
