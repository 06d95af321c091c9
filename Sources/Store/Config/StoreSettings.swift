import Foundation

/// A store as a file names it, every value with the line and key it was written on, so a value
/// kvstore cannot use is reported there: a store config's `[blobs]`, `[index]` and `[cache]`
/// tables, or a job spec's `store`, `index`, `cache` and `cache_size` (docs/DESIGN.md,
/// "Store URL and config"; docs/JOBS.md). Paths are already resolved against the file's folder.
public struct StoreSettings: Sendable, Equatable {
    /// One value, where it was written.
    public struct Setting: Sendable, Equatable {
        public var value: String
        public var line: Int
        /// As errors name it: `blobs.url`, `store`.
        public var key: String

        public init(value: String, line: Int, key: String) {
            self.value = value
            self.line = line
            self.key = key
        }
    }

    public var file: String
    /// The blobs: PATH, file:///PATH or s3://BUCKET[/PREFIX].
    public var store: Setting
    /// The index: a directory (SQLite) or postgresql://…; for a directory store, its root by default.
    public var index: Setting?
    /// How this file names the index, for the message when an s3:// store has none.
    public var indexKey: String
    public var cacheDirectory: Setting?
    public var cacheSize: Setting?
    /// S3 settings that win over the `AWS_*` variables (a store config's `[blobs]` only).
    public var endpoint: Setting?
    public var region: Setting?
    public var accessKeyID: Setting?
    public var secretAccessKey: Setting?
    public var sessionToken: Setting?
    /// What is worth a warning but not a refusal: a secret that others may read.
    public var warnings: [String] = []

    public init(file: String, store: Setting, index: Setting? = nil, indexKey: String, cacheDirectory: Setting? = nil, cacheSize: Setting? = nil) {
        self.file = file
        self.store = store
        self.index = index
        self.indexKey = indexKey
        self.cacheDirectory = cacheDirectory
        self.cacheSize = cacheSize
    }

    /// The S3 settings given, in the order they are documented.
    public var s3Settings: [Setting] { [endpoint, region, accessKeyID, secretAccessKey, sessionToken].compactMap { $0 } }
}

extension TOMLReader {
    /// How a setting's text is taken.
    public enum SettingKind: Sendable { case text, path, location }

    /// `table.key` as a setting: text as written, a path resolved against the file's folder,
    /// or a location (a URL as written, else a path).
    public func setting(_ table: String, _ key: String, _ kind: SettingKind = .text, required: Bool = false) throws(ConfigFileError) -> StoreSettings.Setting? {
        let value: String?
        switch kind {
        case .text: value = try string(table, key, required: required)
        case .path: value = try path(table, key, required: required)
        case .location: value = try location(table, key, required: required)
        }
        return value.map { StoreSettings.Setting(value: $0, line: line(table, key), key: toml.qualified(table, key)) }
    }
}
