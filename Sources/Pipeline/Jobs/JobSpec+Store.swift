import Store
import LightKV

/// The store a job spec works on: `store` (a path or a URL) with `index`, `cache` and
/// `cache_size` as the command-line options, or `store_config = "FILE"` (docs/JOBS.md).
extension JobSpec {
    static let storeKeys = ["store", "index", "cache", "cache_size", "store_config"]

    /// nil when the spec names no store (the environment's is used).
    static func storeSettings(_ reader: TOMLReader) throws(JobSpecError) -> StoreSettings? {
        let given = storeKeys.filter { reader.toml.tables[""]?[$0] != nil }
        if given.contains("store_config") {
            if let other = given.first(where: { $0 != "store_config" }) {
                throw .badValue(file: reader.file, line: reader.line("", other), key: other,
                                problem: "set, but store_config names the store: give one or the other")
            }
            return try StoreSettings(configFile: reader.path("", "store_config")!)
        }
        guard let store = try reader.setting("", "store", .location) else {
            if let other = given.first {
                throw .badValue(file: reader.file, line: reader.line("", other), key: other, problem: "set without store")
            }
            return nil
        }
        return StoreSettings(file: reader.file, store: store, index: try reader.setting("", "index", .location), indexKey: "index",
                             cacheDirectory: try reader.setting("", "cache", .path), cacheSize: try reader.setting("", "cache_size"))
    }
}

extension TOMLReader {
    /// A policy: a name from `policyFile`, else a spelling.
    func policy(_ table: String, _ key: String, in policyFile: PolicyFile?) throws(JobSpecError) -> Policy? {
        guard let s = try string(table, key) else { return nil }
        do { return try Policy.resolve(s, in: policyFile) } catch {
            throw .badValue(file: file, line: line(table, key), key: toml.qualified(table, key), problem: "\(error)")
        }
    }
}
