import Foundation
import LightKV
import Store
import XCTest

/// `kvstore serve` facing careless or hostile clients: connections that never finish, bodies
/// framed wrongly, damaged blobs, a tokens file that says two things.
extension ServeTests {
    func testIdleConnectionsPastTheDescriptorLimitLeaveTheServerAnswering() throws {
        let s = try Scratch()
        let id = try ingested(s)
        // 192 descriptors serve (192 - 64) / 5 = 25 connections; 240 are opened and held.
        let server = try ServerProcess(s, descriptorLimit: 192)
        XCTAssertTrue(server.stderr.contains("allows 25 connections"), server.stderr)
        var held: [HTTPConnection] = []
        for i in 0..<240 {
            let c = try HTTPConnection(port: server.port)
            if i % 8 == 0 { try c.write(Data("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".utf8)) }  // a head half sent
            held.append(c)
        }
        let health = try HTTPConnection(port: server.port)
        health.setReadTimeout(10)
        XCTAssertEqual(try health.send("GET", "/healthz").status, 200, "answered while 240 connections are held")
        let fetch = try HTTPConnection(port: server.port)
        fetch.setReadTimeout(10)
        let reply = try fetch.send("GET", "/v1/entries/\(id)/kvsnap")
        XCTAssertEqual(reply.status, 200)
        XCTAssertEqual(reply.body, try cliFetch(s, id), "a real fetch, byte for byte")
        // The longest-idle connections made room: closed at once, not after a timeout.
        XCTAssertGreaterThanOrEqual(HTTPConnection.closedCount(held, within: 2), 240 - 25)
        XCTAssertEqual(server.stop(), 0)
    }

    func testIdleHalfSentAndStalledConnectionsAreClosedAfterTheirTimeouts() throws {
        let s = try Scratch()
        let input = try Data(contentsOf: URL(fileURLWithPath: try s.snapshot("x.safetensors", layers: 8)))
        let server = try ServerProcess(s, ["--idle-timeout", "1", "--header-timeout", "1", "--body-timeout", "1"])
        let idle = try HTTPConnection(port: server.port)
        let half = try HTTPConnection(port: server.port)
        try half.write(Data("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n".utf8))
        let stalled = try HTTPConnection(port: server.port)
        try stalled.write(stalled.head("PUT", "/v1/snapshots", headers: [:], length: input.count) + input.prefix(100))
        XCTAssertEqual(HTTPConnection.closedCount([idle, half, stalled], within: 0.5), 0, "not closed before the timeout")
        // A slow but steady upload is not cut: each gap is shorter than the body timeout.
        let steady = try HTTPConnection(port: server.port)
        try steady.write(steady.head("PUT", "/v1/snapshots", headers: [:], length: input.count))
        let piece = input.count / 4 + 1
        for start in stride(from: 0, to: input.count, by: piece) {
            usleep(600_000)
            try steady.write(input[start..<min(input.count, start + piece)])
        }
        XCTAssertEqual(try steady.readReply().status, 201, "an upload that keeps arriving is stored")
        XCTAssertEqual(HTTPConnection.closedCount([idle, half, stalled], within: 5), 3)
        // A kept-alive connection is closed once it has been idle a second after its answer.
        let kept = try HTTPConnection(port: server.port)
        kept.setReadTimeout(10)
        try kept.write(Data("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8))
        let asked = Date()
        XCTAssertEqual(try kept.readReply().status, 200)
        XCTAssertLessThan(Date().timeIntervalSince(asked), 5, "closed by the idle timeout")
        let tmp = s.path + "/store/tmp"
        for _ in 0..<100 where !(try FileManager.default.contentsOfDirectory(atPath: tmp)).isEmpty { usleep(50_000) }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp), [], "the stalled upload's file is removed")
        for (flag, value) in [("--idle-timeout", "0"), ("--body-timeout", "x"), ("--max-connections", "0")] {
            let r = try s.cli.run("serve", "--listen", "127.0.0.1:0", flag, value)
            XCTAssertEqual(r.status, 1, "\(flag) \(value)")
            XCTAssertTrue(r.stderr.contains(flag), r.stderr)
        }
        let r = try s.cli.run("serve", "--listen", "127.0.0.1:0", "--max-connections", "100000000")
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("descriptor limit"), r.stderr)
    }

    /// A client that stops reading a stream holds its connection only for the body timeout:
    /// the server closes it once the socket has stayed full that long, and the connection is
    /// free again (two such readers took every connection of `--max-connections 2` for good).
    func testAReaderThatStopsReadingIsClosedAfterTheBodyTimeout() throws {
        let s = try Scratch()
        let n = 2048
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "test/big", spans: [.text(0, n, role: .prompt)]))
        let bytes = (0..<(4 * n * 64)).map { i in Float16(Float(i % 977) / 256 - 2).bitPattern }.withUnsafeBytes { Array($0) }
        for i in 0..<8 {
            b.add("layers.\(i).key", dtype: .f16, shape: [4, n, 64], bytes: bytes)
            b.add("layers.\(i).value", dtype: .f16, shape: [4, n, 64], bytes: bytes)
        }
        let id = try s.cli.run("ingest", try s.write("big.safetensors", b.bytes())).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try ServerProcess(s, ["--body-timeout", "1", "--max-connections", "2"])
        let stalled = try (0..<2).map { _ in try HTTPConnection(port: server.port) }
        for c in stalled { try c.write(c.head("GET", "/v1/entries/\(id)/kvsnap?dtype=f32", headers: [:], length: nil)) }
        sleep(4)  // neither reads: each socket fills, then stays full past the timeout
        XCTAssertEqual(try server.get("/healthz").status, 200, "the stalled connections were closed, freeing their places")
        for c in stalled {
            c.setReadTimeout(10)
            var received = 0
            while true { let chunk = c.read(upTo: 1 << 20); if chunk.isEmpty { break }; received += chunk.count }
            XCTAssertLessThan(received, 30 << 20, "closed before the 32 MB body was sent")
        }
    }

    /// An upload refused before its body is read (here: no token) is answered and the
    /// connection closed, not held open while the server reads and discards the body.
    func testARefusedUploadIsAnsweredAndClosedWithoutReadingItsBody() throws {
        let s = try Scratch()
        let tokens = try s.write("tokens", Array("wr1te-0123456789abcdef write\n".utf8))
        let server = try ServerProcess(s, ["--tokens", tokens])
        let c = try HTTPConnection(port: server.port)
        c.setReadTimeout(20)
        try c.write(Data("PUT /v1/snapshots HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2000000\r\n\r\n".utf8) + Data(count: 1000))
        let started = Date()
        let reply = try c.readReply()
        XCTAssertEqual(reply.status, 401)
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "closed after the answer, not after the body timeout")
    }

    func testBodiesFramedWronglyGet4xxWithAJSONError() throws {
        let s = try Scratch()
        let server = try ServerProcess(s)
        let cases: [(String, Int, String)] = [
            ("Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400, "bad_request"),
            ("Transfer-Encoding: gzip\r\n\r\nabc", 501, "not_implemented"),
            ("Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 501, "not_implemented"),
            ("\r\n", 411, "length_required"),
        ]
        for (rest, status, code) in cases {
            let c = try HTTPConnection(port: server.port)
            try c.write(Data("PUT /v1/snapshots HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\(rest)".utf8))
            let reply = try c.readReply()
            XCTAssertEqual(reply.status, status, "\(rest.debugDescription): \(reply.text)")
            XCTAssertEqual(reply.json["code"] as? String, code, reply.text)
            XCTAssertNotNil(reply.json["error"] as? String)
        }
        XCTAssertEqual(try server.get("/healthz").status, 200)
        XCTAssertTrue(server.stderr.isEmpty || !server.stderr.contains(" 500"), server.stderr)
    }

    /// A head the HTTP decoder refuses (NIO answered a bare 400 with no body) gets a JSON error
    /// naming what was wrong, and nosniff, like every other error; the server goes on serving.
    func testHeadsThatCannotBeParsedGetAJSONErrorNamingTheProblem() throws {
        let s = try Scratch()
        let server = try ServerProcess(s)
        let cases: [(String, Int, String)] = [
            ("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n", 400, "Content-Length"),
            ("PUT /v1/snapshots HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "Transfer-Encoding"),
            ("GET /healthz HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n", 400, "HTTP/1.1"),
            ("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: \(String(repeating: "a", count: 200_000))\r\n\r\n", 431, "larger"),
            ("this is not HTTP\r\n\r\n", 400, "not valid HTTP"),
        ]
        for (request, status, says) in cases {
            let c = try HTTPConnection(port: server.port)
            c.setReadTimeout(20)
            try? c.write(Data(request.utf8))  // the server may answer and close before reading it all
            let reply = try c.readReply()
            XCTAssertEqual(reply.status, status, "\(request.prefix(60).debugDescription): \(reply.text)")
            XCTAssertEqual(reply.json["code"] as? String, "bad_request", reply.text)
            XCTAssertTrue((reply.json["error"] as? String ?? "").contains(says), "\(request.prefix(60).debugDescription): \(reply.text)")
            XCTAssertEqual(reply.header("x-content-type-options"), "nosniff")
        }
        // A good request on a connection whose next head is bad: the first answered as ever.
        let c = try HTTPConnection(port: server.port)
        try c.write(Data("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /healthz HTTP/1.1\r\nContent-Length: x\r\n\r\n".utf8))
        let both = try c.readReply()
        XCTAssertEqual(both.status, 200)
        XCTAssertEqual(try server.get("/healthz").status, 200)
    }

    /// A whole pack is proven before its first byte and hashed again as it is sent: a file
    /// changed in place meanwhile (outside damage: the store never writes a blob twice) ends
    /// the answer short of its Content-Length, so no client takes other bytes for the blob.
    func testAWholePackChangedWhileSentEndsShortOfItsLength() throws {
        let s = try Scratch()
        // 32 MB of noisy F16 (a pack zstd cannot shrink much): more than the socket buffers
        // hold, so the pack's end is still unread by the server while the client waits.
        let n = 2048
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "test/big", spans: [.text(0, n, role: .prompt)]))
        var state: UInt32 = 1
        for i in 0..<16 {
            let bits = (0..<(4 * n * 64)).map { _ -> UInt16 in
                state = state &* 1_664_525 &+ 1_013_904_223
                return Float16(Float(state >> 8) / Float(1 << 24) - 0.5).bitPattern
            }
            let bytes = bits.withUnsafeBytes { Array($0) }
            b.add("layers.\(i).key", dtype: .f16, shape: [4, n, 64], bytes: bytes)
            b.add("layers.\(i).value", dtype: .f16, shape: [4, n, 64], bytes: bytes)
        }
        let id = try s.cli.run("ingest", try s.write("big.safetensors", b.bytes())).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let rows = try JSONSerialization.jsonObject(with: try s.cli.run("ls", "--json").stdoutBytes) as! [[String: Any]]
        let name = try XCTUnwrap(rows.first?["blob"] as? String)
        let path = "\(s.path)/store/blobs/\(name.prefix(2))/\(name).kvpack"
        let size = try XCTUnwrap(FileSystem.size(path))
        let server = try ServerProcess(s)
        let c = try HTTPConnection(port: server.port)
        c.setReadTimeout(30)
        try c.write(c.head("GET", "/v1/entries/\(id)/pack", headers: [:], length: nil))
        var received = c.read(upTo: 4096)
        XCTAssertTrue(String(decoding: received.prefix(12), as: UTF8.self).hasPrefix("HTTP/1.1 200"))
        usleep(300_000)  // the server fills the socket buffers and waits
        let fd = open(path, O_WRONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var byte: UInt8 = 0x5A
        XCTAssertEqual(pwrite(fd, &byte, 1, off_t(size - 200)), 1)
        close(fd)
        while true {
            let chunk = c.read(upTo: 1 << 20)
            if chunk.isEmpty { break }
            received += chunk
        }
        let body = received[(received.range(of: Data("\r\n\r\n".utf8))!.upperBound)...]
        XCTAssertLessThan(body.count, size, "cut short of Content-Length")
        XCTAssertGreaterThan(body.count, 0)
        XCTAssertTrue(server.stderr.contains("stopped mid-stream"), server.stderr)
    }

    func testADamagedBlobIsNamedByItsEntryAndItsPathStaysInTheLog() throws {
        let s = try Scratch()
        let id = try ingested(s)
        let rows = try JSONSerialization.jsonObject(with: try s.cli.run("ls", "--json").stdoutBytes) as! [[String: Any]]
        let name = try XCTUnwrap(rows.first?["blob"] as? String)
        let path = "\(s.path)/store/blobs/\(name.prefix(2))/\(name).kvpack"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count / 3] ^= 0x20
        try FileManager.default.removeItem(atPath: path)
        try bytes.write(to: URL(fileURLWithPath: path))
        let server = try ServerProcess(s)
        let reply = try server.get("/v1/entries/\(id)/pack")
        XCTAssertEqual(reply.status, 500)
        XCTAssertEqual(reply.json["code"] as? String, "corrupt")
        let message = try XCTUnwrap(reply.json["error"] as? String)
        XCTAssertTrue(message.contains(id) && message.contains("damaged"), message)
        XCTAssertFalse(reply.text.contains(s.path) || reply.text.contains(name), "no path of the server's: \(reply.text)")
        XCTAssertTrue(server.stderr.contains(path), "the log has the file: \(server.stderr)")
    }

    func testEveryAnswerSaysNosniffAndPagesCarryAPolicyWithoutUnsafeInline() throws {
        let s = try Scratch()
        let server = try ServerProcess(s)
        for target in ["/", "/healthz", "/v1/entries", "/v1/entries/zz"] {
            XCTAssertEqual(try server.get(target).header("x-content-type-options"), "nosniff", target)
        }
        let policy = try XCTUnwrap(try server.get("/").header("content-security-policy"))
        XCTAssertTrue(policy.contains("default-src 'none'") && policy.contains("style-src 'sha256-"), policy)
        XCTAssertFalse(policy.contains("unsafe-inline"), policy)
    }

    func testATokenGivenTwoScopesIsRefusedAndAnExposedTokensFileIsWarnedAbout() throws {
        let s = try Scratch()
        let token = "tw1ce-0123456789abcdef"
        let twice = try s.write("tokens", Array("# team\n\(token) read\nother-0123456789abcdef write\n\(token) write\n".utf8))
        chmod(twice, 0o600)
        let r = try s.cli.run("serve", "--listen", "127.0.0.1:0", "--tokens", twice)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("tokens:4") && r.stderr.contains("line 2"), r.stderr)
        XCTAssertFalse(r.stderr.contains(token), "the token is never printed")
        let tokens = try s.write("tokens-ok", Array("\(token) read\n\(token) read\n".utf8))
        chmod(tokens, 0o600)
        // A server with read tokens only serves a store that is there; it creates none.
        XCTAssertEqual(try s.cli.run("ingest", try s.snapshot("a.safetensors")).status, 0)
        let closed = try ServerProcess(s, ["--tokens", tokens])
        XCTAssertFalse(closed.stderr.contains("warning"), closed.stderr)
        XCTAssertEqual(closed.stop(), 0)
        chmod(tokens, 0o644)
        let exposed = try ServerProcess(s, ["--tokens", tokens])
        XCTAssertTrue(exposed.stderr.contains("\(tokens) holds a secret") && exposed.stderr.contains("chmod 600"), exposed.stderr)
        XCTAssertEqual(exposed.stop(), 0)
    }
}
