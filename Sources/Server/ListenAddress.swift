/// `HOST:PORT` from `--listen`: `127.0.0.1:8750`, `[::1]:8750`, `localhost:0`, `0.0.0.0:8750`.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) { self.host = host; self.port = port }

    /// Parses `text`, naming what is wrong with it.
    public init(parsing text: String) throws(ServeSetupError) {
        let host: Substring, port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw .badListen(text, "an IPv6 address is written [ADDRESS]:PORT")
            }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw .badListen(text, "expected HOST:PORT") }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        }
        guard !host.isEmpty else { throw .badListen(text, "the host is empty") }
        guard let p = Int(port), (0...65535).contains(p) else { throw .badListen(text, "port \"\(port)\" is not in 0...65535") }
        self.host = String(host)
        self.port = p
    }

    /// True for addresses only this machine can reach.
    public var isLoopback: Bool { Self.isLoopbackName(host) }

    /// `localhost`, `::1` or a dotted `127.x.x.x` address (four decimal parts of at most 255;
    /// a name such as `127.corp.example.net` is not one).
    static func isLoopbackName(_ host: String) -> Bool {
        let host = host.lowercased()
        if host == "localhost" || host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { part in
            (1...3).contains(part.utf8.count) && part.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } && Int(part)! <= 255
        }
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
