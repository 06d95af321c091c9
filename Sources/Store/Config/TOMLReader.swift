import Foundation

/// Typed access to a parsed `TOMLSubset` file, with errors that name the file, the line and
/// the key. Relative paths are resolved against `base`, the folder the file is in, so a file
/// means the same thing whatever directory cron or systemd starts kvstore from.
public struct TOMLReader: Sendable {
    public let toml: TOMLSubset
    public let file: String
    public let base: String

    public init(toml: TOMLSubset, file: String) {
        self.toml = toml
        self.file = file
        base = (file as NSString).deletingLastPathComponent
    }

    /// Reads `path` and parses it.
    public init(path: String) throws(ConfigFileError) {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw .unreadable(file: path, problem: "cannot read: \(error.localizedDescription)")
        }
        self.init(toml: try TOMLSubset(parsing: text, file: path), file: path)
    }

    /// The line of `key`, else of its table's header, else 0.
    public func line(_ table: String, _ key: String) -> Int { toml.tables[table]?[key]?.line ?? toml.tableLines[table] ?? 0 }

    /// Refuses any key of `table` not in `keys`.
    public func onlyKnown(_ table: String, _ keys: [String]) throws(ConfigFileError) {
        for (key, entry) in (toml.tables[table] ?? [:]).sorted(by: { $0.value.line < $1.value.line }) where !keys.contains(key) {
            throw .unknownKey(file: file, line: entry.line, key: toml.qualified(table, key), known: keys.map { toml.qualified(table, $0) })
        }
    }

    /// Refuses any table but `tables` (and the top level).
    public func onlyTables(_ tables: [String]) throws(ConfigFileError) {
        for (name, line) in toml.tableLines.sorted(by: { $0.value < $1.value }) where !tables.contains(name) {
            throw .unknownKey(file: file, line: line, key: "[\(name)]", known: tables.map { "[\($0)]" })
        }
    }

    private func entry(_ table: String, _ key: String, required: Bool) throws(ConfigFileError) -> TOMLSubset.Entry? {
        if let e = toml.tables[table]?[key] { return e }
        if required { throw .missing(file: file, key: toml.qualified(table, key) + (toml.tables[table] == nil && !table.isEmpty ? " (no [\(table)] table)" : "")) }
        return nil
    }

    private func wrongType(_ table: String, _ key: String, _ e: TOMLSubset.Entry, _ wanted: String) -> ConfigFileError {
        .badValue(file: file, line: e.line, key: toml.qualified(table, key), problem: "expected \(wanted), got \(e.value.typeName)")
    }

    public func string(_ table: String, _ key: String, required: Bool = false) throws(ConfigFileError) -> String? {
        guard let e = try entry(table, key, required: required) else { return nil }
        guard case .string(let s) = e.value else { throw wrongType(table, key, e, "a string") }
        return s
    }

    /// A path, resolved against the file's folder.
    public func path(_ table: String, _ key: String, required: Bool = false) throws(ConfigFileError) -> String? {
        guard let s = try string(table, key, required: required) else { return nil }
        guard !s.isEmpty else { throw .badValue(file: file, line: line(table, key), key: toml.qualified(table, key), problem: "empty path") }
        return s.hasPrefix("/") || base.isEmpty ? s : base + "/" + s
    }

    /// A path (resolved as `path` does) or a URL (`scheme://…`, taken as written).
    public func location(_ table: String, _ key: String, required: Bool = false) throws(ConfigFileError) -> String? {
        if let s = try string(table, key, required: required), s.contains("://") { return s }
        return try path(table, key, required: required)
    }

    public func int(_ table: String, _ key: String, min: Int) throws(ConfigFileError) -> Int? {
        guard let e = try entry(table, key, required: false) else { return nil }
        guard case .integer(let n) = e.value else { throw wrongType(table, key, e, "an integer") }
        guard n >= min else { throw .badValue(file: file, line: e.line, key: toml.qualified(table, key), problem: "\(n) is below \(min)") }
        return n
    }

    public func double(_ table: String, _ key: String, min: Double, max: Double = .greatestFiniteMagnitude) throws(ConfigFileError) -> Double? {
        guard let e = try entry(table, key, required: false) else { return nil }
        let d: Double
        switch e.value {
        case .integer(let n): d = Double(n)
        case .float(let f): d = f
        default: throw wrongType(table, key, e, "a number")
        }
        guard d >= min else { throw .badValue(file: file, line: e.line, key: toml.qualified(table, key), problem: "\(d) is below \(min)") }
        guard d <= max else { throw .badValue(file: file, line: e.line, key: toml.qualified(table, key), problem: "\(d) is above \(max)") }
        return d
    }

    public func bool(_ table: String, _ key: String) throws(ConfigFileError) -> Bool? {
        guard let e = try entry(table, key, required: false) else { return nil }
        guard case .bool(let b) = e.value else { throw wrongType(table, key, e, "true or false") }
        return b
    }
}
