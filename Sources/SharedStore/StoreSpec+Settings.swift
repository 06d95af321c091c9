import Foundation
import Store

/// A store named in a file (a store config, a job spec): the same store the command-line
/// options name, with every value kvstore cannot use reported at its file, line and key.
extension StoreSpec {
    init(blobs: Blobs, index: Index, cacheDirectory: String, cacheCapacity: Int) {
        self.blobs = blobs
        self.index = index
        self.cacheDirectory = cacheDirectory
        self.cacheCapacity = cacheCapacity
    }

    /// Settings in the file win over the environment's `AWS_*` variables; credentials left
    /// out of the file come from the environment.
    public init(settings s: StoreSettings, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ConfigFileError) {
        func refuse(_ setting: StoreSettings.Setting, _ problem: Any) -> ConfigFileError {
            .badValue(file: s.file, line: setting.line, key: setting.key, problem: "\(problem)")
        }
        let blobs: Blobs
        let index: Index
        if s.store.value.hasPrefix("s3://") {
            let credentials = try Self.credentials(s, refuse)
            do {
                blobs = .s3(try S3Location(url: s.store.value, endpoint: s.endpoint?.value, region: s.region?.value,
                                           credentials: credentials, environment: environment))
            } catch S3SettingError.badEndpoint(let value, nil) where s.endpoint != nil {
                throw refuse(s.endpoint!, "\"\(value)\" is not http(s)://HOST[:PORT]")
            } catch {
                throw refuse(s.store, error)
            }
            guard let indexSetting = s.index else {
                throw refuse(s.store, "an s3:// store needs its index named: \(s.indexKey) = a directory (SQLite, one host) or postgresql://USER@HOST/DB (a fleet)")
            }
            do { index = try Self.index(indexSetting.value) } catch { throw refuse(indexSetting, error) }
        } else {
            let directory: String
            do { directory = try Self.directory(s.store.value) } catch { throw refuse(s.store, error) }
            for setting in [s.cacheDirectory, s.cacheSize].compactMap({ $0 }) + s.s3Settings {
                throw refuse(setting, "applies to s3:// stores only, not \(directory)")
            }
            blobs = .directory(directory)
            do { index = try s.index.map { try Self.index($0.value) } ?? .sqlite(directory: directory) } catch { throw refuse(s.index!, error) }
        }
        var capacity = Self.defaultCacheCapacity
        if let size = s.cacheSize {
            guard let bytes = ByteSize(parsing: size.value)?.bytes, bytes > 0 else {
                throw refuse(size, "\"\(size.value)\" is not a size such as \"500MB\" or \"20GB\"")
            }
            capacity = bytes
        }
        self.init(blobs: blobs, index: index, cacheDirectory: s.cacheDirectory?.value ?? Self.defaultCacheDirectory(environment),
                  cacheCapacity: capacity)
    }

    /// The file's credentials, all or none: a key without its secret is a mistake, not a cue
    /// to borrow the other half from the environment.
    private static func credentials(_ s: StoreSettings, _ refuse: (StoreSettings.Setting, Any) -> ConfigFileError) throws(ConfigFileError) -> S3Location.Credentials? {
        switch (s.accessKeyID, s.secretAccessKey) {
        case (let key?, let secret?):
            return S3Location.Credentials(accessKeyID: key.value, secretAccessKey: secret.value, sessionToken: s.sessionToken?.value)
        case (nil, nil):
            if let token = s.sessionToken { throw refuse(token, "set without access_key_id and secret_access_key") }
            return nil
        case (let key?, nil):
            throw refuse(key, "set without secret_access_key: give both, or neither (then AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are used)")
        case (nil, let secret?):
            throw refuse(secret, "set without access_key_id: give both, or neither (then AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are used)")
        }
    }
}
