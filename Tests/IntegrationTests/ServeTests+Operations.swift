import Foundation
import XCTest

/// What an operator and a new user of `kvstore serve` meet: the access log, TLS, the
/// `process_*` metrics, and the answers of the API that used to mislead.
extension ServeTests {
    func testAnEmptyEntryIDIsAJSONErrorNotTheList() throws {
        let s = try Scratch()
        _ = try ingested(s)
        let server = try ServerProcess(s)
        for path in ["/v1/entries/", "/v1/entries//kvsnap"] {
            let reply = try server.get(path)
            XCTAssertEqual(reply.status, 400, path)
            XCTAssertEqual(reply.json["code"] as? String, "bad_request", reply.text)
            XCTAssertNil(reply.json["entries"], "not the list")
        }
        XCTAssertEqual(try server.get("/v1/entries").status, 200)
        XCTAssertEqual(server.stop(), 0)
    }

    func testAnUploadSaysWhetherItWasAlreadyStoredAndUnderWhichPolicy() throws {
        let s = try Scratch()
        let input = try Data(contentsOf: URL(fileURLWithPath: try s.snapshot("x.safetensors", seed: 4)))
        let server = try ServerProcess(s)
        let first = try server.request("PUT", "/v1/snapshots?policy=lightkv", body: input)
        XCTAssertEqual(first.status, 201, first.text)
        XCTAssertEqual(first.json["already_stored"] as? Bool, false)
        XCTAssertNil(first.json["stored_policy"])
        let same = try server.request("PUT", "/v1/snapshots?policy=lightkv", body: input)
        XCTAssertEqual(same.status, 200)
        XCTAssertEqual(same.json["already_stored"] as? Bool, true)
        XCTAssertNil(same.json["stored_policy"], "stored under the policy asked for")
        let other = try server.request("PUT", "/v1/snapshots?policy=none", body: input)
        XCTAssertEqual(other.status, 200)
        XCTAssertEqual(other.json["already_stored"] as? Bool, true)
        let stored = try XCTUnwrap(other.json["stored_policy"] as? String, other.text)
        XCTAssertTrue(stored.hasPrefix("lightkv"), stored)
        XCTAssertEqual(other.json["policy"] as? String, stored)
        XCTAssertEqual(server.stop(), 0)
    }

    func testTheLayoutsFidelityIsAnObjectNotAStringOfJSON() throws {
        let s = try Scratch()
        let id = try ingested(s)
        let server = try ServerProcess(s)
        let layout = try server.get("/v1/entries/\(id)/layout").json
        let entry = try XCTUnwrap((layout["header"] as? [String: Any])?["entry"] as? [String: Any])
        let fidelity = try XCTUnwrap(entry["fidelity"] as? [String: Any], "\(entry)")
        XCTAssertNotNil(fidelity["proportional"] as? [String: Any])
        XCTAssertEqual(entry["id"] as? String, id)
        XCTAssertEqual(server.stop(), 0)
    }

    func testTheAccessLogHasALinePerRequestWithoutTokensOrQueryValuesItDoesNotKnow() throws {
        let s = try Scratch()
        let id = try ingested(s)
        let token = "wr1te-0123456789abcdef"
        let tokens = try s.write("tokens", Array("\(token) write\n".utf8))
        let server = try ServerProcess(s, ["--tokens", tokens])
        let auth = ["Authorization": "Bearer \(token)"]
        XCTAssertEqual(try server.get("/v1/entries?limit=1&signature=s3cr3tvalue", headers: auth).status, 200)
        let snap = try server.get("/v1/entries/\(id)/kvsnap", headers: auth)
        XCTAssertEqual(snap.status, 200)
        XCTAssertEqual(try server.get("/v1/entries/0000").status, 401)
        XCTAssertEqual(server.stop(), 0)
        let lines = server.stderr.split(separator: "\n").filter { $0.contains(" access ") }
        XCTAssertEqual(lines.count, 3, server.stderr)
        XCTAssertTrue(lines.contains { $0.contains("access 127.0.0.1:") && $0.contains(" GET /v1/entries?limit=1&signature=… 200 ") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.contains(" GET /v1/entries/\(id)/kvsnap 200 \(snap.body.count) B ") && $0.hasSuffix(" ms") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.contains(" GET /v1/entries/0000 401 ") }, "\(lines)")
        XCTAssertFalse(server.stderr.contains(token) || server.stderr.contains("s3cr3tvalue"), "no token, no unknown query value")

        let quiet = try ServerProcess(s, ["--no-access-log"])
        XCTAssertEqual(try quiet.get("/healthz").status, 200)
        XCTAssertEqual(quiet.stop(), 0)
        XCTAssertFalse(quiet.stderr.contains(" access "), quiet.stderr)
    }

    func testTLSServesHTTPSWithTheGivenCertificateAndPlainHTTPOffLoopbackIsWarnedAbout() throws {
        let s = try Scratch()
        _ = try ingested(s)
        let (cert, key) = (s.path + "/cert.pem", s.path + "/key.pem")
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert]
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        XCTAssertEqual(openssl.terminationStatus, 0)
        let server = try ServerProcess(s, ["--tls-cert", cert, "--tls-key", key])
        let curl = Process()
        let out = Pipe()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        curl.arguments = ["-sS", "--cacert", cert, "https://127.0.0.1:\(server.port)/healthz"]
        curl.standardOutput = out
        try curl.run()
        let body = out.fileHandleForReading.readDataToEndOfFile()
        curl.waitUntilExit()
        XCTAssertEqual(curl.terminationStatus, 0)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: body) as? [String: Any])?["entries"] as? Int, 1)
        XCTAssertNotEqual((try? server.get("/healthz"))?.status, 200, "plain HTTP is not answered on the TLS port")
        XCTAssertEqual(server.stop(), 0)

        let half = try s.cli.run("serve", "--tls-cert", cert)
        XCTAssertNotEqual(half.status, 0)
        XCTAssertTrue(half.stderr.contains("--tls-cert and --tls-key go together"), half.stderr)
        let wrong = try s.cli.run("serve", "--tls-cert", key, "--tls-key", key)
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stderr.contains(key + ": --tls-cert"), wrong.stderr)
        // Tokens over plain HTTP off loopback: warned about before anything is bound (the
        // connection limit asked for is refused next, so no socket is ever opened).
        let tokens = try s.write("tokens", Array("wr1te-0123456789abcdef write\n".utf8))
        let plain = try s.cli.run("serve", "--listen", "0.0.0.0:0", "--tokens", tokens, "--max-connections", "1000000000")
        XCTAssertEqual(plain.status, 1)
        XCTAssertTrue(plain.stderr.contains("over plain HTTP: tokens cross the network in clear text"), plain.stderr)
        XCTAssertTrue(plain.stderr.contains("--max-connections 1000000000"), plain.stderr)
    }

    func testMetricsHaveProcessFiguresBuildInfoAndHistogramsByRouteAndPolicy() throws {
        let s = try Scratch()
        let id = try ingested(s)
        let server = try ServerProcess(s)
        XCTAssertEqual(try server.get("/v1/entries/\(id)/kvsnap").status, 200)
        XCTAssertEqual(try server.get("/v1/entries/\(id)/pack").status, 200)
        let input = try Data(contentsOf: URL(fileURLWithPath: try s.snapshot("up.safetensors", seed: 6)))
        XCTAssertEqual(try server.request("PUT", "/v1/snapshots?policy=none", body: input).status, 201)
        let metrics = try server.get("/metrics").text
        let policy = try server.get("/v1/entries/\(id)").json["policy"] as? String ?? "?"
        XCTAssertEqual(server.stop(), 0)
        func value(_ prefix: String) -> Double? {
            metrics.split(separator: "\n").first { $0.hasPrefix(prefix + " ") }.flatMap { Double($0.split(separator: " ").last!) }
        }
        XCTAssertGreaterThan(value("process_resident_memory_bytes") ?? 0, 1_000_000, metrics)
        XCTAssertGreaterThan(value("process_virtual_memory_bytes") ?? 0, 1_000_000)
        XCTAssertGreaterThan(value("process_cpu_seconds_total") ?? 0, 0)
        XCTAssertGreaterThan(value("process_open_fds") ?? 0, 3)
        XCTAssertGreaterThan(value("process_max_fds") ?? 0, 3)
        let start = try XCTUnwrap(value("process_start_time_seconds"))
        XCTAssertEqual(start, Date().timeIntervalSince1970, accuracy: 600)
        XCTAssertTrue(metrics.contains("# TYPE process_cpu_seconds_total counter"), metrics)
        XCTAssertTrue(metrics.contains("kvstore_build_info{api_version=\"1\",swift=\""), metrics)
        XCTAssertTrue(metrics.contains("kvstore_fetch_duration_seconds_count{route=\"/v1/entries/{id}/kvsnap\",policy=\"\(policy)\"} 1"), metrics)
        XCTAssertTrue(metrics.contains("kvstore_fetch_duration_seconds_count{route=\"/v1/entries/{id}/pack\",policy=\"\(policy)\"} 1"), metrics)
        XCTAssertTrue(metrics.contains("kvstore_ingest_duration_seconds_count{policy=\"none+"), metrics)
        XCTAssertTrue(metrics.contains("kvstore_http_request_duration_seconds_count{route=\"/v1/snapshots\"} 1"), metrics)
    }

    func testThePagesButtonsPinAndRemoveOnlyFromTheServersOwnPagesAndOnlyForAWriteToken() throws {
        let s = try Scratch()
        let id = try ingested(s)
        let (reader, writer) = ("r3ad-0123456789abcdef", "wr1te-0123456789abcdef")
        let tokens = try s.write("tokens", Array("\(reader) read\n\(writer) write\n".utf8))
        let server = try ServerProcess(s, ["--tokens", tokens])
        func basic(_ token: String) -> String { "Basic " + Data("any:\(token)".utf8).base64EncodedString() }
        let host = "127.0.0.1:\(server.port)"
        XCTAssertFalse(try server.get("/", headers: ["Authorization": basic(reader)]).text.contains("action=\"/entries/"), "no buttons for a read token")
        XCTAssertTrue(try server.get("/", headers: ["Authorization": basic(writer)]).text.contains("action=\"/entries/\(id)/pin\""))
        XCTAssertTrue(try server.get("/entries/\(id)", headers: ["Authorization": basic(writer)]).text.contains("action=\"/entries/\(id)/remove\""))
        func post(_ path: String, _ headers: [String: String], _ body: String) throws -> HTTPReply {
            try server.request("POST", path, headers: ["Host": host, "Content-Type": "application/x-www-form-urlencoded"].merging(headers) { $1 },
                               body: Data(body.utf8))
        }
        let own = ["Authorization": basic(writer), "Origin": "http://\(host)"]
        XCTAssertEqual(try post("/entries/\(id)/pin", ["Authorization": basic(writer), "Origin": "http://evil.example"], "pinned=1").status, 403)
        XCTAssertEqual(try post("/entries/\(id)/pin", ["Authorization": basic(writer), "Origin": "http://127.0.0.1:1"], "pinned=1").status, 403)
        XCTAssertEqual(try post("/entries/\(id)/pin", ["Authorization": basic(writer)], "pinned=1").status, 403, "no Origin, no Sec-Fetch-Site")
        XCTAssertEqual(try post("/entries/\(id)/pin", ["Authorization": basic(reader), "Origin": "http://\(host)"], "pinned=1").status, 403)
        XCTAssertEqual(try post("/entries/\(id)/pin", ["Origin": "http://\(host)"], "pinned=1").status, 401)
        XCTAssertEqual(try server.get("/v1/entries/\(id)", headers: ["Authorization": "Bearer \(reader)"]).json["pinned"] as? Bool, false, "nothing changed")
        let pinned = try post("/entries/\(id)/pin", own, "pinned=1&back=%2F%3Fsort%3Din")
        XCTAssertEqual(pinned.status, 303)
        XCTAssertEqual(pinned.header("location"), "/?sort=in")
        XCTAssertEqual(try server.get("/v1/entries/\(id)", headers: ["Authorization": "Bearer \(reader)"]).json["pinned"] as? Bool, true)
        let sameSite = try post("/entries/\(id)/pin", ["Authorization": basic(writer), "Sec-Fetch-Site": "same-origin"], "pinned=0&back=%2F%2Fevil.example")
        XCTAssertEqual(sameSite.status, 303)
        XCTAssertEqual(sameSite.header("location"), "/entries/\(id)", "only a path on this server is followed back")
        let tab = try post("/entries/\(id)/pin", own, "pinned=0&back=%2F%09%2Fevil.example")
        XCTAssertEqual(tab.header("location"), "/entries/\(id)", "a tab between the slashes is dropped by browsers: //evil.example")
        XCTAssertEqual(try post("/entries/\(id)/pin", own, "pinned=0&x=" + String(repeating: "a", count: 5000)).status, 413, "a form too long")
        XCTAssertEqual(try server.get("/v1/entries/\(id)", headers: ["Authorization": "Bearer \(reader)"]).json["pinned"] as? Bool, false)
        let removed = try post("/entries/\(id)/remove", own, "back=%2F")
        XCTAssertEqual(removed.status, 303)
        XCTAssertEqual(try server.get("/v1/entries/\(id)", headers: ["Authorization": "Bearer \(reader)"]).status, 404)
        XCTAssertEqual(server.stop(), 0)
    }
}
