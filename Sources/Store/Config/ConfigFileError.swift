/// What is wrong with a kvstore TOML file (a job spec, a policy file, a store config), naming
/// the file, the line and the key.
public enum ConfigFileError: Error, Equatable, CustomStringConvertible {
    /// The file cannot be read.
    case unreadable(file: String, problem: String)
    /// A line is not TOML this parser accepts.
    case syntax(file: String, line: Int, problem: String)
    /// A key is defined twice in one table.
    case duplicate(file: String, line: Int, key: String)
    /// A key this kind of file does not know (often a typo).
    case unknownKey(file: String, line: Int, key: String, known: [String])
    /// A key has the wrong type or an unacceptable value.
    case badValue(file: String, line: Int, key: String, problem: String)
    /// A required key is absent.
    case missing(file: String, key: String)

    public var description: String {
        switch self {
        case .unreadable(let f, let p): "\(f): \(p)"
        case .syntax(let f, let l, let p): "\(f):\(l): \(p)"
        case .duplicate(let f, let l, let k): "\(f):\(l): \(k) is set twice"
        case .unknownKey(let f, let l, let k, let known): "\(f):\(l): unknown key \(k) (known: \(known.joined(separator: ", ")))"
        case .badValue(let f, let l, let k, let p): "\(f):\(l): \(k): \(p)"
        case .missing(let f, let k): "\(f): missing \(k)"
        }
    }
}
