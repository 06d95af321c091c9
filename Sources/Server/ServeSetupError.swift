/// Why `kvstore serve` refuses to start (CLI exit code 1).
public enum ServeSetupError: Error, CustomStringConvertible {
    case badListen(String, String)
    case openNonLoopback(ListenAddress)
    case badTokens(path: String, line: Int, problem: String)
    case unreadableTokens(path: String, problem: String)
    case tooManyConnections(asked: Int, descriptors: Int, fits: Int)
    case badTLS(path: String, problem: String)

    public var description: String {
        switch self {
        case .badListen(let text, let problem): "--listen \(text): \(problem)"
        case .openNonLoopback(let a):
            "refusing to listen on \(a) without --tokens: only loopback addresses (127.0.0.1, ::1, localhost) may be served without authentication"
        case .badTokens(let path, let line, let problem): "\(path):\(line): \(problem)"
        case .unreadableTokens(let path, let problem): "\(path): \(problem)"
        case .badTLS(let path, let problem): "\(path): \(problem)"
        case .tooManyConnections(let asked, let descriptors, let fits):
            "--max-connections \(asked): the descriptor limit (\(descriptors), `ulimit -n`, systemd's LimitNOFILE) serves at most \(fits) "
                + "(\(DescriptorBudget.perConnection) a connection, \(DescriptorBudget.reserved) kept for the server): raise the limit or ask for fewer"
        }
    }
}
