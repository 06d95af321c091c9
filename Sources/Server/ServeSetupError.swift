/// Why `kvstore serve` refuses to start (CLI exit code 1).
public enum ServeSetupError: Error, CustomStringConvertible {
    case badListen(String, String)
    case openNonLoopback(ListenAddress)
    case badTokens(path: String, line: Int, problem: String)
    case unreadableTokens(path: String, problem: String)

    public var description: String {
        switch self {
        case .badListen(let text, let problem): "--listen \(text): \(problem)"
        case .openNonLoopback(let a):
            "refusing to listen on \(a) without --tokens: only loopback addresses (127.0.0.1, ::1, localhost) may be served without authentication"
        case .badTokens(let path, let line, let problem): "\(path):\(line): \(problem)"
        case .unreadableTokens(let path, let problem): "\(path): \(problem)"
        }
    }
}
