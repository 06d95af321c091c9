import Logging

/// Log metadata values made safe to print, whatever they hold.
///
/// File names and error messages come from outside (a producer names its files; an error
/// can quote a tensor name from the input), and the daemon's log is one event a line,
/// `key=value`. So every value is escaped as in logfmt: one with a space, `"`, `=` or any
/// control character is put in double quotes, `"` and `\` are backslash-escaped, and
/// control and line-separator characters are written `\n`, `\r`, `\t` or `\u{XX}`: a
/// newline in a file name can never start a forged line. Values are cut to `limit`
/// characters, with the full length noted.
public enum LogField {
    public static let limit = 1024

    public static func escaped(_ value: String) -> String {
        var body = ""
        var quote = value.isEmpty
        var count = 0
        for scalar in value.unicodeScalars {
            if count == limit {
                body += "…(\(value.unicodeScalars.count) characters)"
                quote = true
                break
            }
            count += 1
            switch scalar {
            case "\"": body += "\\\""; quote = true
            case "\\": body += "\\\\"; quote = true
            case "\n": body += "\\n"; quote = true
            case "\r": body += "\\r"; quote = true
            case "\t": body += "\\t"; quote = true
            case " ", "=": body.unicodeScalars.append(scalar); quote = true
            default:
                if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    body += "\\u{" + String(scalar.value, radix: 16) + "}"
                    quote = true
                } else {
                    body.unicodeScalars.append(scalar)
                }
            }
        }
        return quote ? "\"" + body + "\"" : body
    }
}

extension Dictionary where Key == String, Value == Logger.MetadataValue {
    /// Metadata whose every value is `LogField.escaped`.
    public static func fields(_ pairs: KeyValuePairs<String, String>) -> Logger.Metadata {
        var metadata: Logger.Metadata = [:]
        for (key, value) in pairs { metadata[key] = .string(LogField.escaped(value)) }
        return metadata
    }
}
