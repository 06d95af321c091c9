import Foundation

/// A store config file (`--store-config FILE`, `$KVSTORE_CONFIG`, a job spec's
/// `store_config`), docs/DESIGN.md "Store URL and config":
///
///     [blobs]
///     url = "s3://kv-fleet/prod"            # or a directory
///     endpoint = "http://10.0.0.5:8333"     # S3 only, as are region and the credentials
///     region = "us-east-1"
///     [index]
///     url = "postgresql://kvstore@10.0.0.6/kvstore"   # or a directory (SQLite)
///     [cache]
///     dir = "/var/cache/kvstore"
///     size = "20GB"
extension StoreSettings {
    static let configTables: [(table: String, keys: [String])] = [
        ("blobs", ["url", "endpoint", "region", "access_key_id", "secret_access_key", "session_token"]),
        ("index", ["url"]),
        ("cache", ["dir", "size"]),
    ]

    /// Reads and checks the file's shape; every problem names the file, the line and the key.
    /// Whether the values make a usable store is `StoreSpec(settings:)`'s to say.
    public init(configFile path: String) throws(ConfigFileError) {
        let reader = try TOMLReader(path: path)
        try reader.onlyTables(Self.configTables.map(\.table))
        for (key, entry) in (reader.toml.tables[""] ?? [:]).sorted(by: { $0.value.line < $1.value.line }) {
            throw .unknownKey(file: path, line: entry.line, key: key,
                              known: Self.configTables.flatMap { t in t.keys.map { "\(t.table).\($0)" } })
        }
        for (table, keys) in Self.configTables { try reader.onlyKnown(table, keys) }
        self.init(file: path, store: try reader.setting("blobs", "url", .location, required: true)!,
                  index: try reader.setting("index", "url", .location), indexKey: "index.url",
                  cacheDirectory: try reader.setting("cache", "dir", .path), cacheSize: try reader.setting("cache", "size"))
        endpoint = try reader.setting("blobs", "endpoint")
        region = try reader.setting("blobs", "region")
        accessKeyID = try reader.setting("blobs", "access_key_id")
        secretAccessKey = try reader.setting("blobs", "secret_access_key")
        sessionToken = try reader.setting("blobs", "session_token")
        warnings = Self.exposedSecretWarning(path: path, secrets: secretKeys).map { [$0] } ?? []
    }

    /// The keys of this file that hold a secret: S3 credentials, a password in the index URL.
    var secretKeys: [String] {
        var keys = [secretAccessKey, sessionToken].compactMap { $0?.key }
        if let index, URLComponents(string: index.value)?.password != nil { keys.append(index.key) }
        return keys
    }

    /// A warning when a file holding secrets can be read by its group or by others; kvstore
    /// goes on (the operator may have a reason), but says so. `remedy` follows the chmod hint.
    public static func exposedSecretWarning(path: String, secrets: [String],
                                            remedy: String = "or leave the credentials to the environment") -> String? {
        guard !secrets.isEmpty, let mode = (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int,
              mode & 0o044 != 0 else { return nil }
        return "warning: \(path) holds a secret (\(secrets.joined(separator: ", "))) and can be read by its group or others "
            + "(mode \(String(mode & 0o777, radix: 8))): chmod 600 \(path), \(remedy)"
    }
}
