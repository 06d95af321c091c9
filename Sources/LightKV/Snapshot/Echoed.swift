/// Text from an input echoed in an error message (a tensor name, a metadata key or value,
/// a JSON parser's complaint), cut to `limit` characters with the full size noted, so a
/// 70,000-character tensor name makes a one-line message, not 70 KB of log.
public enum Echoed {
    public static let limit = 300

    public static func cut(_ text: String) -> String {
        guard text.unicodeScalars.count > limit else { return text }
        var head = String.UnicodeScalarView()
        head.append(contentsOf: text.unicodeScalars.prefix(limit))
        return String(head) + "…(\(text.utf8.count) bytes)"
    }
}
