import Foundation

/// The small part of TOML that job specs, policy files and store configs use, parsed without
/// a dependency.
///
/// Accepted (docs/JOBS.md, "Format"):
/// - `# comments`, on their own line or after a value; blank lines;
/// - table headers `[name]` or `[a.b]` (the dotted name is kept as one string);
/// - `key = value` with bare keys (`A-Za-z0-9_-`), where a value is a basic string
///   `"..."` (escapes `\"`, `\\`, `\n`, `\t`), a literal string `'...'`, an integer
///   (`42`, `-1`, `1_000`), a float (`0.5`, `1e3`), or `true`/`false`.
///
/// Not accepted (each is a syntax error naming the line): arrays, inline tables,
/// multi-line strings, dates, dotted or quoted keys, arrays of tables.
public struct TOMLSubset: Sendable {
    public enum Value: Sendable, Equatable {
        case string(String)
        case integer(Int)
        case float(Double)
        case bool(Bool)

        public var typeName: String {
            switch self {
            case .string: "a string"
            case .integer: "an integer"
            case .float: "a float"
            case .bool: "a boolean"
            }
        }
    }

    /// A value and the line it is on (1-based).
    public struct Entry: Sendable, Equatable {
        public var value: Value
        public var line: Int
    }

    /// Tables by name ("" for keys before the first header), each key to its entry.
    public private(set) var tables: [String: [String: Entry]] = ["": [:]]
    /// Line of each table header.
    public private(set) var tableLines: [String: Int] = [:]

    public init(parsing text: String, file: String) throws(ConfigFileError) {
        var table = ""
        for (index, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            let line = index + 1
            let content = try Self.stripComment(String(raw), file: file, line: line).trimmingCharacters(in: .whitespaces)
            if content.isEmpty { continue }
            if content.hasPrefix("[") {
                guard content.hasSuffix("]"), !content.hasPrefix("[[") else {
                    throw .syntax(file: file, line: line, problem: "a table header is [name] (arrays of tables are not supported)")
                }
                let name = String(content.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                guard !name.isEmpty, name.split(separator: ".", omittingEmptySubsequences: false).allSatisfy({ Self.isBareKey(String($0)) }) else {
                    throw .syntax(file: file, line: line, problem: "table name \"\(name)\" is not a bare name")
                }
                guard tables[name] == nil else { throw .duplicate(file: file, line: line, key: "[\(name)]") }
                tables[name] = [:]
                tableLines[name] = line
                table = name
                continue
            }
            guard let eq = content.firstIndex(of: "=") else {
                throw .syntax(file: file, line: line, problem: "expected key = value or [table], got \"\(content)\"")
            }
            let key = content[..<eq].trimmingCharacters(in: .whitespaces)
            let valueText = content[content.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            guard Self.isBareKey(key) else {
                throw .syntax(file: file, line: line, problem: "key \"\(key)\" is not a bare key (letters, digits, _ and -)")
            }
            let value = try Self.value(valueText, file: file, line: line, key: qualified(table, key))
            guard tables[table]?[key] == nil else { throw .duplicate(file: file, line: line, key: qualified(table, key)) }
            tables[table]?[key] = Entry(value: value, line: line)
        }
    }

    /// `table.key`, or `key` at the top level: how errors name a key.
    public func qualified(_ table: String, _ key: String) -> String { table.isEmpty ? key : "\(table).\(key)" }

    static func isBareKey(_ s: String) -> Bool {
        !s.isEmpty && s.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" }
    }

    /// The line without a trailing comment (a `#` outside strings).
    static func stripComment(_ line: String, file: String, line number: Int) throws(ConfigFileError) -> String {
        var quote: Character?
        var escaped = false
        for (i, c) in zip(line.indices, line) {
            if let q = quote {
                if escaped { escaped = false } else if c == "\\" && q == "\"" { escaped = true } else if c == q { quote = nil }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == "#" {
                return String(line[..<i])
            }
        }
        if quote != nil { throw .syntax(file: file, line: number, problem: "unterminated string") }
        return line
    }

    static func value(_ text: String, file: String, line: Int, key: String) throws(ConfigFileError) -> Value {
        if text.isEmpty { throw .syntax(file: file, line: line, problem: "\(key) has no value") }
        if text.hasPrefix("\"") {
            guard text.count >= 2, text.hasSuffix("\"") else { throw .syntax(file: file, line: line, problem: "\(key): unterminated string") }
            var out = ""
            var escaped = false
            for c in text.dropFirst().dropLast() {
                if escaped {
                    switch c {
                    case "\"": out.append("\"")
                    case "\\": out.append("\\")
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    default: throw .syntax(file: file, line: line, problem: "\(key): unsupported escape \\\(c)")
                    }
                    escaped = false
                } else if c == "\\" {
                    escaped = true
                } else if c == "\"" {
                    throw .syntax(file: file, line: line, problem: "\(key): text after the closing quote")
                } else {
                    out.append(c)
                }
            }
            if escaped { throw .syntax(file: file, line: line, problem: "\(key): unterminated string") }
            return .string(out)
        }
        if text.hasPrefix("'") {
            let inner = text.dropFirst().dropLast()
            guard text.count >= 2, text.hasSuffix("'"), !inner.contains("'") else {
                throw .syntax(file: file, line: line, problem: "\(key): unterminated literal string")
            }
            return .string(String(inner))
        }
        if text == "true" { return .bool(true) }
        if text == "false" { return .bool(false) }
        let digits = text.replacingOccurrences(of: "_", with: "")
        if let n = Int(digits) { return .integer(n) }
        if digits.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }), let d = Double(digits), d.isFinite { return .float(d) }
        if text.hasPrefix("[") || text.hasPrefix("{") {
            throw .syntax(file: file, line: line, problem: "\(key): arrays and inline tables are not supported")
        }
        throw .syntax(file: file, line: line, problem: "\(key): \"\(text)\" is not a string, number or boolean (strings need quotes)")
    }
}
