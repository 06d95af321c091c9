import Foundation
import XCTest

/// `kvstore serve` on 127.0.0.1 with a port the system picks, as the tests run it.
final class ServerProcess {
    let process: Process
    let port: Int
    private let stderrFile: String

    /// Starts the server (with `descriptorLimit`: under `ulimit -n` of that many) and waits
    /// for its "listening on" line.
    init(_ scratch: Scratch, _ args: [String] = [], environment: [String: String] = [:], descriptorLimit: Int? = nil) throws {
        let out = Pipe()
        stderrFile = scratch.path + "/serve-\(UUID().uuidString).err"
        FileManager.default.createFile(atPath: stderrFile, contents: nil)
        process = try scratch.cli.start(["serve", "--listen", "127.0.0.1:0"] + args, stdout: out.fileHandleForWriting,
                                        stderr: FileHandle(forWritingAtPath: stderrFile), environment: environment,
                                        descriptorLimit: descriptorLimit)
        out.fileHandleForWriting.closeFile()
        var line = Data()
        while !line.contains(0x0A) {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line += chunk
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let p = text.split(separator: ":").last.flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) else {
            process.waitUntilExit()
            throw NSError(domain: "serve", code: Int(process.terminationStatus),
                          userInfo: [NSLocalizedDescriptionKey: "server did not start: \(text) \(try String(contentsOfFile: stderrFile, encoding: .utf8))"])
        }
        port = p
    }

    deinit { stop() }

    /// What the server wrote to standard error so far.
    var stderr: String { (try? String(contentsOfFile: stderrFile, encoding: .utf8)) ?? "" }

    /// SIGTERM, then waits; returns the exit status.
    @discardableResult
    func stop() -> Int32 {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    func request(_ method: String, _ target: String, headers: [String: String] = [:], body: Data? = nil) throws -> HTTPReply {
        try HTTPConnection(port: port).send(method, target, headers: headers, body: body)
    }

    func get(_ target: String, headers: [String: String] = [:]) throws -> HTTPReply { try request("GET", target, headers: headers) }
}

/// A response as received.
struct HTTPReply {
    var status: Int
    var headers: [String: String]
    var body: Data
    var text: String { String(decoding: body, as: UTF8.self) }
    func header(_ name: String) -> String? { headers[name.lowercased()] }
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
}

/// HTTP/1.1 over a plain socket, so a test can send any path byte for byte (`..`, encoded
/// slashes), stop an upload half way, or read a response slowly.
final class HTTPConnection {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard r == 0 else { close(fd); throw NSError(domain: "connect", code: Int(errno)) }
    }

    deinit { close(fd) }

    /// Gives up on a read after `seconds` (it then reads as the end of the stream).
    func setReadTimeout(_ seconds: Int) {
        var t = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t, socklen_t(MemoryLayout<timeval>.size))
    }

    /// How many of `connections` the server has closed (or answered and closed) within `seconds`.
    static func closedCount(_ connections: [HTTPConnection], within seconds: Double) -> Int {
        var open = Set(connections.indices)
        let end = Date().addingTimeInterval(seconds)
        while !open.isEmpty, Date() < end {
            var fds = open.sorted().map { pollfd(fd: connections[$0].fd, events: Int16(POLLIN), revents: 0) }
            guard poll(&fds, nfds_t(fds.count), 100) > 0 else { continue }
            for p in fds where p.revents != 0 {
                // Readable: the end of the stream, or an answer (a refusal) before it.
                var byte: UInt8 = 0, n = 0
                repeat { n = recv(p.fd, &byte, 1, Int32(MSG_DONTWAIT)) } while n > 0
                if n == 0 || errno != EAGAIN { open.remove(connections.firstIndex { $0.fd == p.fd }!) }
            }
        }
        return connections.count - open.count
    }

    func write(_ data: Data) throws {
        try data.withUnsafeBytes { b in
            var done = 0
            while done < b.count {
                let n = Glibc.send(fd, b.baseAddress! + done, b.count - done, Int32(MSG_NOSIGNAL))
                guard n > 0 else { throw NSError(domain: "send", code: Int(errno)) }
                done += n
            }
        }
    }

    func head(_ method: String, _ target: String, headers: [String: String], length: Int?) -> Data {
        var text = "\(method) \(target) HTTP/1.1\r\n\(headers["Host"] == nil ? "Host: 127.0.0.1\r\n" : "")Connection: close\r\n"
        if let length { text += "Content-Length: \(length)\r\n" }
        for (k, v) in headers { text += "\(k): \(v)\r\n" }
        return Data((text + "\r\n").utf8)
    }

    func send(_ method: String, _ target: String, headers: [String: String] = [:], body: Data? = nil) throws -> HTTPReply {
        try write(head(method, target, headers: headers, length: body?.count ?? (method == "PUT" || method == "POST" ? 0 : nil)))
        if let body { try? write(body) }  // the server may answer (413) and close before reading it all
        return try readReply()
    }

    /// Reads at most `count` bytes (fewer at the end of the stream).
    func read(upTo count: Int) -> Data {
        var buffer = [UInt8](repeating: 0, count: count)
        var n: Int
        // A signal (SIGCHLD when the server exits, as Foundation's Process watches its child)
        // interrupts recv; that is not the end of the stream.
        repeat { n = recv(fd, &buffer, count, 0) } while n < 0 && errno == EINTR
        return n > 0 ? Data(buffer[0..<n]) : Data()
    }

    /// Reads the status line and headers, then the body until the connection closes.
    func readReply(afterHead: ((HTTPReply) -> Void)? = nil) throws -> HTTPReply {
        var data = Data()
        var headEnd: Range<Data.Index>?
        while headEnd == nil {
            let chunk = read(upTo: 65536)
            if chunk.isEmpty { throw NSError(domain: "http", code: 0, userInfo: [NSLocalizedDescriptionKey: "closed before the headers"]) }
            data += chunk
            headEnd = data.range(of: Data("\r\n\r\n".utf8))
        }
        let lines = String(decoding: data[..<headEnd!.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        var reply = HTTPReply(status: Int(lines[0].split(separator: " ")[1]) ?? 0, headers: [:], body: Data(data[headEnd!.upperBound...]))
        for line in lines.dropFirst() {
            if let colon = line.firstIndex(of: ":") {
                reply.headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        afterHead?(reply)
        while true {
            let chunk = read(upTo: 1 << 20)
            if chunk.isEmpty { break }
            reply.body += chunk
        }
        if reply.header("transfer-encoding") == "chunked" { reply.body = Self.dechunk(reply.body) }
        return reply
    }

    static func dechunk(_ data: Data) -> Data {
        var out = Data(), i = data.startIndex
        while let lineEnd = data[i...].range(of: Data("\r\n".utf8)) {
            guard let size = Int(String(decoding: data[i..<lineEnd.lowerBound], as: UTF8.self), radix: 16), size > 0 else { break }
            out += data[lineEnd.upperBound..<(lineEnd.upperBound + size)]
            i = lineEnd.upperBound + size + 2
        }
        return out
    }
}
