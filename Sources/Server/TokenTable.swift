import Foundation
import Store

/// What a token may do. `write` includes `read`.
public enum Scope: String, Sendable, Comparable {
    case read, write
    public static func < (a: Scope, b: Scope) -> Bool { a == .read && b == .write }
}

/// The bearer tokens of `--tokens FILE`: one `TOKEN SCOPE` per line, `#` comments and blank
/// lines ignored. Tokens are compared in constant time and never printed.
///
///     let table = try TokenTable.load(path: "/etc/kvstore/tokens")
///     table.warnings.forEach { print($0) }  // the file can be read by its group or others
public struct TokenTable: Sendable {
    private let tokens: [(token: [UInt8], scope: Scope)]
    /// What `load` noticed but let pass: the file can be read by its group or others.
    public private(set) var warnings: [String] = []

    public init(_ entries: [(String, Scope)]) {
        tokens = entries.map { (Array($0.0.utf8), $0.1) }
    }

    public static func load(path: String) throws(ServeSetupError) -> TokenTable {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw .unreadableTokens(path: path, problem: "cannot read: \((error as NSError).localizedDescription)")
        }
        var entries: [(String, Scope)] = []
        var firstLine: [Substring: (line: Int, scope: Scope)] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count == 2 else {
                throw .badTokens(path: path, line: n + 1, problem: "expected TOKEN SCOPE (two fields), found \(fields.count)")
            }
            guard let scope = Scope(rawValue: String(fields[1])) else {
                throw .badTokens(path: path, line: n + 1, problem: "scope \"\(fields[1])\" is not read or write")
            }
            guard fields[0].utf8.count >= 16 else {
                throw .badTokens(path: path, line: n + 1, problem: "the token is \(fields[0].utf8.count) characters; use at least 16 (e.g. `openssl rand -hex 32`)")
            }
            if let first = firstLine[fields[0]], first.scope != scope {
                throw .badTokens(path: path, line: n + 1, problem: "the token of line \(first.line) again, now with scope \(scope.rawValue) "
                                 + "instead of \(first.scope.rawValue): a token has one scope, remove one of the lines")
            }
            firstLine[fields[0]] = firstLine[fields[0]] ?? (n + 1, scope)
            entries.append((String(fields[0]), scope))
        }
        guard !entries.isEmpty else { throw .unreadableTokens(path: path, problem: "holds no tokens") }
        var table = TokenTable(entries)
        table.warnings = StoreSettings.exposedSecretWarning(path: path, secrets: ["bearer tokens"],
                                                             remedy: "so that only the server's user can read it").map { [$0] } ?? []
        return table
    }

    /// True when some token may write (upload, remove, pin): a server with read tokens only
    /// never writes its store, so it must not create one.
    public var allowsWriting: Bool { tokens.contains { $0.scope == .write } }

    /// The scope of `presented`, or nil. Every stored token is compared in full whatever
    /// matched, so the time taken says nothing about how much of a token was right.
    public func scope(of presented: Substring) -> Scope? {
        let given = Array(presented.utf8)
        var found: Scope?
        for t in tokens {
            // Any difference in length counts, not its low byte alone (a token with 256 bytes
            // appended was accepted).
            var diff = UInt(bitPattern: t.token.count ^ given.count)
            for i in 0..<t.token.count {
                diff |= UInt(t.token[i] ^ (i < given.count ? given[i] : 0))
            }
            if diff == 0 { found = max(found ?? t.scope, t.scope) }
        }
        return found
    }
}
