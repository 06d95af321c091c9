import Foundation

/// Output helpers: tables for people, JSON for scripts, errors on stderr.
enum Terminal {
    static var isInteractive: Bool { isatty(1) == 1 }

    /// One line on stderr, whatever the message quotes: control characters (a newline in a
    /// file name, say) are escaped, so no input can forge a second message line.
    static func error(_ message: String) {
        FileHandle.standardError.write(Data("kvstore: \(oneLine(message))\n".utf8))
    }

    /// An argument-parsing error: its message on one line as `error` prints it (it quotes what
    /// was typed), then the usage lines the parser wrote below it, as lines.
    static func usageError(message: String, full: String) {
        error(message)
        let lead = "Error: \(message)\n"
        guard full.hasPrefix(lead) else { return }
        let usage = full.dropFirst(lead.count).trimmingCharacters(in: .whitespacesAndNewlines)
        if !usage.isEmpty { note(usage) }
    }

    static func oneLine(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for c in text.unicodeScalars {
            switch c {
            case "\n": out.append(contentsOf: "\\n".unicodeScalars)
            case "\r": out.append(contentsOf: "\\r".unicodeScalars)
            case "\t": out.append(contentsOf: "\\t".unicodeScalars)
            case _ where c.value < 0x20 || c.value == 0x7F:
                out.append(contentsOf: String(format: "\\x%02x", c.value).unicodeScalars)
            default: out.append(c)
            }
        }
        return String(out)
    }

    static func note(_ message: String) {
        FileHandle.standardError.write(Data("\(message)\n".utf8))
    }

    /// Prints rows as left-aligned columns (right-aligned where a column is numeric).
    static func table(_ header: [String], _ rows: [[String]]) {
        // Producer-given text (a model name, a key) may hold control characters: escaped, so a
        // row stays one line and no escape sequence reaches the terminal.
        let all = ([header] + rows).map { $0.map(oneLine) }
        let widths = header.indices.map { c in all.map { $0[c].count }.max() ?? 0 }
        let numeric = header.indices.map { c in rows.allSatisfy { Double($0[c].filter { $0 != "×" && $0 != "%" }) != nil } && !rows.isEmpty }
        for row in all {
            let cells = row.enumerated().map { c, cell in
                let pad = String(repeating: " ", count: widths[c] - cell.count)
                return numeric[c] ? pad + cell : cell + pad
            }
            print(cells.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
    }

    /// Prints `value` in the one JSON dialect of kvstore (README, "JSON"): snake_case keys,
    /// nested objects rather than JSON in strings, slashes unescaped, keys sorted.
    static func json<T: Encodable>(_ value: T) {
        print(String(decoding: try! jsonEncoder.encode(value), as: UTF8.self))
    }

    static var jsonEncoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return encoder
    }

    static func bytes(_ n: Int) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = Double(n)
        var unit = 0
        while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
        return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
    }

    static func date(_ t: Double) -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm"
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: Date(timeIntervalSince1970: t))
    }
}
