import Foundation
import SharedStore
import Store

/// Which store a command works on. The first that is given wins: `--store-config FILE`;
/// `--store URL` (with `--index`, `--cache`, `--cache-size`); `$KVSTORE_CONFIG`;
/// `$KVSTORE_HOME`; `~/.kvstore`. A config file names the whole store, so the options that
/// name parts of one are refused beside it rather than quietly mixed in.
extension StoreSpec {
    static func named(store: String?, index: String?, cache: String?, cacheSize: String?, storeConfig: String?,
                      environment: [String: String] = ProcessInfo.processInfo.environment) throws -> StoreSpec {
        // `--store "$STORE"` with the variable unset: an empty value names no store, and must
        // not quietly mean ~/.kvstore.
        for (flag, value) in [("--store", store), ("--index", index), ("--cache", cache), ("--store-config", storeConfig)]
        where value?.isEmpty == true {
            throw StoreSpecError.badURL("''", problem: "\(flag) is empty (an unset variable?); name a store or leave \(flag) out")
        }
        let fromEnvironment = storeConfig == nil && store == nil ? environment["KVSTORE_CONFIG"].flatMap { $0.isEmpty ? nil : $0 } : nil
        guard let config = storeConfig ?? fromEnvironment else {
            return try StoreSpec(store: store, index: index, cache: cache, cacheSize: cacheSize, environment: environment)
        }
        let parts = [("--store", store), ("--index", index), ("--cache", cache), ("--cache-size", cacheSize)].filter { $0.1 != nil }.map(\.0)
        if !parts.isEmpty {
            throw StoreOptionConflict(options: parts, config: storeConfig == nil ? "$KVSTORE_CONFIG (\(config))" : "--store-config")
        }
        return try named(by: StoreSettings(configFile: config), environment: environment)
    }

    /// The store a file's settings name; their warnings (a secret others may read) go to stderr.
    static func named(by settings: StoreSettings, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> StoreSpec {
        settings.warnings.forEach { Terminal.error($0) }
        return try StoreSpec(settings: settings, environment: environment)
    }
}

/// `--index` and the like beside a store config (exit code 1).
struct StoreOptionConflict: Error, CustomStringConvertible {
    var options: [String]
    var config: String

    var description: String {
        "\(options.joined(separator: ", ")) cannot be combined with \(config): the config file names the whole store (put the setting in the file, or leave the file out)"
    }
}
