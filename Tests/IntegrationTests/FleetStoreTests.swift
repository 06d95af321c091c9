import Foundation
import XCTest

/// A fleet on one shared store: blobs in a live S3 server (SeaweedFS), the index in a live
/// PostgreSQL, each node a kvstore process with its own cache (docs/DESIGN.md, "Semantics
/// across hosts"). Nodes 1-4 run on test hosts of their own, network namespaces that reach
/// the servers over a veth link (`TestHosts`); where namespaces cannot be made, processes on
/// this machine stand in for hosts. Either way they share nothing but the two servers.
final class FleetStoreTests: XCTestCase {
    private var scratch: Scratch!
    private var hosts: TestHosts!
    private var servers: FleetServers!

    override func setUpWithError() throws {
        scratch = try Scratch()
        hosts = TestHosts(count: 4)
        servers = try FleetServers(scratch, postgres: true, listenEverywhere: hosts.isolated)
    }

    override func tearDownWithError() throws {
        servers = nil
        hosts = nil
        scratch = nil
    }

    private func host(_ node: Int) -> TestHosts.Host { hosts.hosts[node - 1] }

    /// The store as node `node` names it: shared blobs and index, its own cache.
    private func store(node: Int) -> [String] {
        ["--store", "s3://\(FleetServers.bucket)/fleet", "--index", servers.postgres(at: host(node).serverAddress)!,
         "--cache", scratch.path + "/node\(node)/cache"]
    }

    /// Starts `kvstore ARGS` on node `node`'s host.
    private func start(_ args: [String], node: Int, stdout: FileHandle, stderr: FileHandle, environment extra: [String: String]) throws -> Process {
        let (executable, arguments) = hosts.command(on: host(node), CLI.binary, args + store(node: node))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        p.environment = ProcessInfo.processInfo.environment.merging(servers.environment(at: host(node).serverAddress)) { $1 }
            .merging(extra) { $1 }
        p.standardOutput = stdout
        p.standardError = stderr
        try p.run()
        return p
    }

    /// `kvstore ARGS` on node `node` (outputs through files: a pipe would be held by nothing
    /// here, but the S3 test servers taught us to keep to files).
    private func kv(_ args: [String], node: Int = 1, environment extra: [String: String] = [:]) throws -> CLI.Result {
        let out = scratch.path + "/out-\(UUID().uuidString)", err = out + ".err"
        FileManager.default.createFile(atPath: out, contents: nil)
        FileManager.default.createFile(atPath: err, contents: nil)
        let p = try start(args, node: node, stdout: FileHandle(forWritingAtPath: out)!, stderr: FileHandle(forWritingAtPath: err)!,
                          environment: extra)
        p.waitUntilExit()
        let bytes = try Data(contentsOf: URL(fileURLWithPath: out))
        return CLI.Result(status: p.terminationStatus, stdout: String(decoding: bytes, as: UTF8.self),
                          stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "", stdoutBytes: bytes)
    }

    /// Starts `kvstore watch INBOX` on node `node`, logging to `node<N>/watch.log`.
    private func daemon(_ inbox: String, node: Int, _ args: [String] = [], environment extra: [String: String] = [:]) throws -> Process {
        let log = scratch.path + "/node\(node)/watch.log"
        try FileManager.default.createDirectory(atPath: scratch.path + "/node\(node)", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: log, contents: nil)
        return try start(["watch", inbox, "--settle", "0.2", "--interval", "0.2"] + args, node: node,
                         stdout: FileHandle.nullDevice, stderr: FileHandle(forWritingAtPath: log)!, environment: extra)
    }

    private func log(node: Int) -> String {
        (try? String(contentsOfFile: scratch.path + "/node\(node)/watch.log", encoding: .utf8)) ?? ""
    }

    /// An inbox with the snapshots of `seeds`, renamed in as producers do.
    private func inbox(_ name: String, seeds: [Int]) throws -> String {
        let inbox = scratch.path + "/" + name
        try FileManager.default.createDirectory(atPath: inbox, withIntermediateDirectories: true)
        for seed in seeds { try drop(seed, into: inbox) }
        return inbox
    }

    private func drop(_ seed: Int, into inbox: String) throws {
        let staged = try scratch.snapshot("staged-\(UUID().uuidString).safetensors", seed: seed)
        XCTAssertEqual(rename(staged, inbox + "/in\(seed).safetensors"), 0)
    }

    private func entries(node: Int = 1) throws -> [[String: Any]] {
        let ls = try kv(["ls", "--json"], node: node)
        XCTAssertEqual(ls.status, 0, ls.stderr)
        return (try JSONSerialization.jsonObject(with: ls.stdoutBytes) as? [[String: Any]]) ?? []
    }

    private func keys(node: Int = 1) throws -> [String] { try entries(node: node).compactMap { $0["key"] as? String }.sorted() }

    private func verify(node: Int = 1) throws -> (status: Int32, checked: Int, failures: Int, orphans: Int) {
        let r = try kv(["verify", "--json"], node: node)
        let report = try JSONSerialization.jsonObject(with: r.stdoutBytes) as! [String: Any]
        return (r.status, report["checked"] as? Int ?? -1, (report["failures"] as! [Any]).count, (report["orphans"] as! [Any]).count)
    }

    /// Objects in the bucket, as `stats` counts them.
    private func blobFiles() throws -> Int {
        let stats = try JSONSerialization.jsonObject(with: try kv(["stats", "--json"]).stdoutBytes) as? [String: Any]
        return stats?["blob_files"] as? Int ?? -1
    }

    private func wait(timeout: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            usleep(100_000)
        }
        return try condition()
    }

    private static func names(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { !$0.hasPrefix(".") && $0.hasSuffix(".safetensors") }.sorted()
    }

    func testTwoDaemonsAndAFetcherShareOneStoreAndEveryInputIsStoredOnce() throws {
        print("FleetStoreTests: nodes run \(hosts.isolated ? "in network namespaces of their own" : "as processes on this machine")")
        // Seeds 2...5 are dropped into both inboxes: the same snapshot on two hosts.
        let a = try inbox("inbox-a", seeds: Array(0...5)), b = try inbox("inbox-b", seeds: Array(2...7))
        let first = try daemon(a, node: 1, ["--once", "--jobs", "2"]), second = try daemon(b, node: 2, ["--once", "--jobs", "2"])
        first.waitUntilExit(); second.waitUntilExit()
        XCTAssertEqual(first.terminationStatus, 0, log(node: 1))
        XCTAssertEqual(second.terminationStatus, 0, log(node: 2))
        XCTAssertEqual(Self.names(a + "/done").count, 6, log(node: 1))
        XCTAssertEqual(Self.names(b + "/done").count, 6, log(node: 2))
        XCTAssertEqual(try keys(node: 3), (0...7).map { "key-\($0)" }, "every input stored exactly once")

        // A third node, with an empty cache, fetches what a local store would serve.
        for seed in 0...7 {
            let input = try scratch.snapshot("local\(seed).safetensors", seed: seed)
            let id = try scratch.cli.run("ingest", input).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let local = try scratch.cli.run("fetch", id, "-o", "-")
            let shared = try kv(["fetch", id, "-o", "-"], node: 3)
            XCTAssertEqual(shared.status, 0, shared.stderr)
            XCTAssertEqual(shared.stdoutBytes, local.stdoutBytes, "seed \(seed): bit-identical to the local store's")
        }
        let v = try verify(node: 3)
        XCTAssertEqual(v.status, 0)
        XCTAssertEqual(v.checked, 8)
        XCTAssertEqual(v.failures + v.orphans, 0)
    }

    /// Questions about one image asked on two nodes store its prefix once in the bucket
    /// (docs/design/segments.md); a third node fetches each as a local store would, and the
    /// segment goes with the last entry that names it.
    func testQuestionsOnTwoNodesShareOneSegment() throws {
        var ids: [String] = []
        for q in 1...3 {
            let input = try scratch.question("q\(q).safetensors", question: q, prompt: 4 + q)
            let r = try kv(["ingest", "--policy", "int8", input], node: q == 2 ? 2 : 1)
            XCTAssertEqual(r.status, 0, r.stderr)
            ids.append(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            let local = try scratch.cli.run("ingest", "--policy", "int8", input)
            XCTAssertEqual(local.stdout, r.stdout)
        }
        XCTAssertEqual(try blobFiles(), 4, "one segment and three parts")
        for id in ids {
            let shared = try kv(["fetch", id, "-o", "-"], node: 3)
            XCTAssertEqual(shared.status, 0, shared.stderr)
            XCTAssertEqual(shared.stdoutBytes, try scratch.cli.run("fetch", id, "-o", "-").stdoutBytes)
        }
        XCTAssertEqual(try verify(node: 3).failures, 0)
        for id in ids { XCTAssertEqual(try kv(["rm", id], node: 2).status, 0) }
        let compact = try kv(["compact", "--grace-seconds", "0"], node: 3)
        XCTAssertEqual(compact.status, 0, compact.stdout + compact.stderr)
        XCTAssertEqual(try blobFiles(), 0, compact.stdout)
    }

    /// A guided reduction's prefix, guided by the first question on one node, is named by a
    /// later question ingested on another (the lookup runs on PostgreSQL).
    func testAGuidedPrefixIsNamedByALaterQuestionOnAnotherNode() throws {
        let before = try blobFiles()
        var ids: [String] = []
        for q in 1...2 {
            let input = try scratch.question("g\(q).safetensors", question: q)
            let r = try kv(["ingest", "--policy", "aircache50:dense=0", input], node: q)
            XCTAssertEqual(r.status, 0, r.stderr)
            ids.append(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        XCTAssertEqual(try blobFiles() - before, 3, "one segment and two parts")
        for id in ids { XCTAssertEqual(try kv(["fetch", id, "-o", "/dev/null"], node: 3).status, 0) }
        XCTAssertEqual(try verify(node: 3).failures, 0)
        for id in ids { XCTAssertEqual(try kv(["rm", id], node: 2).status, 0) }
    }

    func testADaemonKilledMidUploadLeavesNoRowAndCompactionCollectsWhatItLeft() throws {
        let s3Port = Int(URL(string: servers.environment["AWS_ENDPOINT_URL_S3"]!)!.port!)
        let proxy = try HoldingProxy(upstreamPort: s3Port)
        let viaProxy = ["AWS_ENDPOINT_URL_S3": "http://\(host(1).serverAddress):\(proxy.port)"]
        let inbox = try inbox("inbox", seeds: [1])

        // Killed while its PUT is on the way: S3 stores nothing of it, the index no row.
        proxy.hold("PUT")
        var watcher = try daemon(inbox, node: 1, environment: viaProxy)
        XCTAssertTrue(proxy.waitUntilHeld(timeout: 30), log(node: 1))
        kill(watcher.processIdentifier, SIGKILL)
        watcher.waitUntilExit()
        proxy.release()
        XCTAssertEqual(try keys(node: 2), [])

        // Killed after S3 answered the PUT, before the HEAD that confirms it: the object is
        // in the bucket, and still no row names it.
        proxy.hold("HEAD")
        watcher = try daemon(inbox, node: 1, environment: viaProxy)
        XCTAssertTrue(proxy.waitUntilHeld(timeout: 30), log(node: 1))
        kill(watcher.processIdentifier, SIGKILL)
        watcher.waitUntilExit()
        proxy.release()
        XCTAssertEqual(try keys(node: 2), [], "no row without a confirmed object")
        XCTAssertEqual(try verify(node: 2).orphans, 1, "the uploaded object, named by no row")

        // Compaction keeps the orphan through the grace period, then collects it.
        XCTAssertEqual(try kv(["compact"], node: 2).status, 0)
        XCTAssertEqual(try verify(node: 2).orphans, 1, "younger than the grace period: kept")
        let compacted = try kv(["compact", "--grace-seconds", "0", "--json"], node: 2)
        XCTAssertEqual(compacted.status, 0, compacted.stderr)
        XCTAssertEqual(try verify(node: 2).orphans, 0)

        // The input was never lost: the next daemon recovers it from the dead one's work folder.
        watcher = try daemon(inbox, node: 1, ["--once"])
        watcher.waitUntilExit()
        XCTAssertEqual(watcher.terminationStatus, 0, log(node: 1))
        XCTAssertEqual(try keys(node: 2), ["key-1"])
        XCTAssertEqual(Self.names(inbox + "/done"), ["in1.safetensors"])
        let v = try verify(node: 2)
        XCTAssertEqual([v.checked, v.failures, v.orphans], [1, 0, 0])
    }

    /// An object store that takes a HEAD and never answers it: the ingest is a transient
    /// failure after the HEAD's own deadline (15 s), not the 120 s read timeout, which an
    /// insert's presence check waited out holding the blobs' index locks (every other writer
    /// of those blobs, and compaction, waited as long).
    func testAHeadTheObjectStoreNeverAnswersIsTransientWithinItsDeadline() throws {
        let s3Port = Int(URL(string: servers.environment["AWS_ENDPOINT_URL_S3"]!)!.port!)
        let proxy = try HoldingProxy(upstreamPort: s3Port)
        let viaProxy = ["AWS_ENDPOINT_URL_S3": "http://\(host(1).serverAddress):\(proxy.port)"]
        let input = try scratch.snapshot("held.safetensors", seed: 12)
        proxy.hold("HEAD")
        let began = Date()
        let r = try kv(["ingest", input], node: 1, environment: viaProxy)
        let waited = Date().timeIntervalSince(began)
        proxy.release()
        XCTAssertTrue(proxy.waitUntilHeld(timeout: 1))
        XCTAssertEqual(r.status, 4, r.stderr)
        XCTAssertTrue(r.stderr.contains("HEAD"), r.stderr)
        XCTAssertLessThan(waited, 60, "the HEAD's deadline, not the read timeout")
        XCTAssertEqual(try kv(["ingest", input], node: 1).status, 0, "stored once the store answers")
    }

    func testStoppingPostgresOrS3MidBatchIsTransientAndLosesNoInput() throws {
        let inbox = try inbox("inbox", seeds: [0, 1])
        let watcher = try daemon(inbox, node: 1, ["--jobs", "1"])
        XCTAssertTrue(try wait(timeout: 60) { Self.names(inbox + "/done").count == 2 }, log(node: 1))

        servers.stopPostgres(immediate: true)
        let down = try kv(["ingest", try scratch.snapshot("cli.safetensors", seed: 9)], node: 2)
        XCTAssertEqual(down.status, 4, "the index is down: transient\n" + down.stderr)
        for seed in 2...3 { try drop(seed, into: inbox) }
        sleep(2)
        XCTAssertTrue(Self.names(inbox + "/failed").isEmpty, "a transient failure fails no input")
        try servers.startPostgres()
        XCTAssertTrue(try wait(timeout: 60) { Self.names(inbox + "/done").count == 4 }, log(node: 1))

        servers.stopS3()
        for seed in 4...5 { try drop(seed, into: inbox) }
        sleep(2)
        XCTAssertTrue(Self.names(inbox + "/failed").isEmpty)
        try servers.startS3()
        XCTAssertTrue(try wait(timeout: 60) { Self.names(inbox + "/done").count == 6 }, log(node: 1))

        kill(watcher.processIdentifier, SIGTERM)
        watcher.waitUntilExit()
        XCTAssertEqual(watcher.terminationStatus, 0, log(node: 1))
        XCTAssertTrue(log(node: 1).contains("retry"), "the daemon saw the outages and retried:\n" + log(node: 1))
        XCTAssertEqual(try keys(node: 2), (0...5).map { "key-\($0)" })
        let v = try verify(node: 2)
        XCTAssertEqual([v.checked, v.failures, v.orphans], [6, 0, 0])
    }

    func testCompactionUnderFetchesFromTwoNodesFailsNoFetch() throws {
        var ids: [String] = []
        for seed in 0..<4 {
            let r = try kv(["ingest", try scratch.snapshot("in\(seed).safetensors", seed: seed)])
            XCTAssertEqual(r.status, 0, r.stderr)
            ids.append(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        var before: [Data] = []
        for id in ids { before.append(try kv(["fetch", id, "-o", "-"]).stdoutBytes) }

        // Nodes 2 and 3 fetch every entry over and over while node 1 re-packs them all and,
        // with no grace period, deletes the objects they were read from.
        let fetches = FetchLog()
        let group = DispatchGroup()
        for node in [2, 3] {
            DispatchQueue.global().async(group: group) { [ids] in
                while !fetches.stopped {
                    for (i, id) in ids.enumerated() {
                        let r = try! self.kv(["fetch", id, "-o", "-"], node: node)
                        fetches.append((node, i, r))
                    }
                }
            }
        }
        sleep(1)
        for _ in 0..<2 {
            let compacted = try kv(["compact", "--cold-days", "0", "--cold-policy", "lightkv+int8", "--grace-seconds", "0"])
            XCTAssertEqual(compacted.status, 0, compacted.stderr)
        }
        sleep(1)
        fetches.stop()
        group.wait()
        let outcomes = fetches.outcomes

        var after: [Data] = []
        for id in ids { after.append(try kv(["fetch", id, "-o", "-"], node: 4).stdoutBytes) }
        XCTAssertNotEqual(before, after, "re-packed with another policy")
        XCTAssertGreaterThan(outcomes.count, 8)
        for o in outcomes {
            XCTAssertEqual(o.result.status, 0, "node \(o.node) fetch of \(ids[o.index]): \(o.result.stderr)")
            XCTAssertTrue(o.result.stdoutBytes == before[o.index] || o.result.stdoutBytes == after[o.index],
                          "node \(o.node): the entry as it was, or as it is")
        }
        let v = try verify(node: 4)
        XCTAssertEqual([v.checked, v.failures, v.orphans], [4, 0, 0], "the old objects are gone")
    }

    func testServeOnOneNodeServesAndStoresForTheWholeFleet() throws {
        let input = try scratch.snapshot("in.safetensors", seed: 3)
        let id = try kv(["ingest", input]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try ServerProcess(scratch, store(node: 2), environment: servers.environment(at: host(2).serverAddress))
        let served = try server.get("/v1/entries/\(id)/kvsnap")
        XCTAssertEqual(served.status, 200, served.text + server.stderr)
        XCTAssertEqual(served.body, try kv(["fetch", id, "-o", "-"], node: 3).stdoutBytes, "the HTTP stream is what fetch writes")

        let upload = try server.request("PUT", "/v1/snapshots", body: try Data(contentsOf: URL(fileURLWithPath: try scratch.snapshot("up.safetensors", seed: 4))))
        XCTAssertEqual(upload.status, 201, upload.text + server.stderr)
        XCTAssertEqual(try keys(node: 3), ["key-3", "key-4"], "an upload to one node is in the fleet's index")
        let page = try server.get("/v1/entries?limit=1")
        XCTAssertEqual(page.status, 200, page.text)
        XCTAssertEqual((page.json["entries"] as? [Any])?.count, 1, page.text)
        let search = try server.get("/?q=KEY-3")
        XCTAssertEqual(search.status, 200)
        XCTAssertTrue(search.text.contains(String(id.prefix(12))), "the web page's search runs on PostgreSQL too")
        // Fetches are counted in memory and written in batches: the CLI fetch's when its
        // process ends, the server's HTTP stream within 10 s although the server stays idle.
        let count = { try self.entries(node: 4).filter { $0["id"] as? String == id }.compactMap { $0["access_count"] as? Int }.first }
        XCTAssertTrue(try wait(timeout: 20) { try count() == 2 }, "one HTTP stream and one CLI fetch: \(String(describing: try? count()))")
        XCTAssertEqual(server.stop(), 0)
    }

    /// An object's age is taken on the object store's clock, a tombstone's on the index's; a
    /// node's clock enters neither (docs/design/shared.md, "Clocks"). A compactor whose clock
    /// runs ten minutes ahead (libfaketime) with a five-minute grace period takes an entry's
    /// objects uploaded a moment ago, with no row yet, for young ones, not for orphans.
    func testACompactorWhoseClockRunsAheadTakesNoFreshObjectForAnOrphan() throws {
        let faketime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
        guard FileManager.default.fileExists(atPath: faketime) else { throw XCTSkip("libfaketime is not installed (make test-deps)") }
        let ahead = ["LD_PRELOAD": faketime, "FAKETIME": "+10m", "FAKETIME_DONT_FAKE_MONOTONIC": "1"]
        let clock = try kv(["ls", "--json"], environment: ahead)
        XCTAssertEqual(clock.status, 0, "the node still talks to both servers: \(clock.stderr)")

        // An entry's part and segment in the bucket and no row: what an ingest leaves between
        // its uploads and its row.
        let id = try kv(["ingest", "--policy", "int8", try scratch.question("q.safetensors", question: 1)])
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(id.count, 64)
        let url = URL(string: servers.postgres!)!
        let psql = try FleetServers.shell(["-c", "/usr/bin/psql -h 127.0.0.1 -p \(url.port!) -U postgres -d kvstore -qAt -c \"DELETE FROM entries WHERE id = '\(id)'\""])
        XCTAssertEqual(psql.status, 0, psql.output)
        XCTAssertEqual(try keys(), [])
        XCTAssertEqual(try blobFiles(), 2)

        let early = try kv(["compact", "--grace-seconds", "300", "--json"], node: 2, environment: ahead)
        XCTAssertEqual(early.status, 0, early.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: early.stdoutBytes) as? [String: Any])
        XCTAssertEqual((report["orphans_adopted"] as? [String])?.count, 0, "seconds old by the bucket's clock: \(early.stdout)")
        XCTAssertEqual(report["orphans_removed"] as? Int, 0, early.stdout)
        XCTAssertEqual(try blobFiles(), 2)

        // Past the grace period (zero here) the orphan is adopted, as ever.
        let late = try kv(["compact", "--grace-seconds", "0"], node: 2)
        XCTAssertEqual(late.status, 0, late.stderr)
        XCTAssertEqual(try keys(), ["q1"])
        XCTAssertEqual(try kv(["fetch", id, "-o", "/dev/null"], node: 3).status, 0)
    }

    /// `verify` on a shared store reads each object itself: the node that ingested an entry
    /// (and so holds a copy) reports the entry's object replaced behind kvstore's back, as a
    /// node without a copy does; it once vouched for it from its cache.
    /// A node holding a checked copy of a guided segment names it for a later question; the
    /// object itself was damaged meanwhile (outside kvstore): the node publishes its checked
    /// copy again, so the later question's entry reads back on every node.
    func testALaterQuestionRepairsAGuidedSegmentDamagedBehindANodesCopy() throws {
        let first = try kv(["ingest", "--policy", "aircache50:dense=0", try scratch.question("r1.safetensors", question: 1)], node: 1)
        XCTAssertEqual(first.status, 0, first.stderr)
        let show = try JSONSerialization.jsonObject(with: try kv(["show", first.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "--json"]).stdoutBytes) as? [String: Any]
        let segment = try XCTUnwrap((show?["segment"] as? [String: Any])?["blob"] as? String)
        let env = servers.environment
        let curl = "curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user \"$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY\""
        let key = "\(env["AWS_ENDPOINT_URL_S3"]!)/\(FleetServers.bucket)/fleet/blobs/\(segment.prefix(2))/\(segment).kvpack"
        let junk = scratch.path + "/junk.kvpack"
        try Data(repeating: 7, count: 4096).write(to: URL(fileURLWithPath: junk))
        let damage = try FleetServers.shell(["-c", """
            export AWS_ACCESS_KEY_ID='\(env["AWS_ACCESS_KEY_ID"]!)' AWS_SECRET_ACCESS_KEY='\(env["AWS_SECRET_ACCESS_KEY"]!)'
            \(curl) -X PUT -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' --data-binary @'\(junk)' '\(key)'
            """])
        XCTAssertEqual(damage.status, 0, damage.output)
        let later = try kv(["ingest", "--policy", "aircache50:dense=0", try scratch.question("r2.safetensors", question: 2)], node: 1)
        XCTAssertEqual(later.status, 0, later.stderr)
        let id = later.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let again = try JSONSerialization.jsonObject(with: try kv(["show", id, "--json"]).stdoutBytes) as? [String: Any]
        XCTAssertEqual((again?["segment"] as? [String: Any])?["blob"] as? String, segment, "the later question names the first's segment")
        let fetched = try kv(["fetch", id, "-o", "/dev/null"], node: 2)
        XCTAssertEqual(fetched.status, 0, "another node reads the later question's entry: \(fetched.stderr)")
        XCTAssertEqual(try verify(node: 2).failures, 0)
    }

    func testVerifyOnANodeThatCachedAnObjectChecksTheObjectItself() throws {
        var blobs: [String] = []
        for seed in 1...2 {
            let id = try kv(["ingest", "--policy", "int8", try scratch.snapshot("v\(seed).safetensors", seed: seed)]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let show = try JSONSerialization.jsonObject(with: try kv(["show", id, "--json"]).stdoutBytes) as? [String: Any]
            blobs.append(try XCTUnwrap(show?["blob"] as? String))
        }
        XCTAssertEqual(try verify(node: 1).failures, 0)
        let env = servers.environment
        let curl = "curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user \"$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY\""
        func key(_ blob: String) -> String { "\(env["AWS_ENDPOINT_URL_S3"]!)/\(FleetServers.bucket)/fleet/blobs/\(blob.prefix(2))/\(blob).kvpack" }
        let other = scratch.path + "/other.kvpack"
        let replace = try FleetServers.shell(["-c", """
            export AWS_ACCESS_KEY_ID='\(env["AWS_ACCESS_KEY_ID"]!)' AWS_SECRET_ACCESS_KEY='\(env["AWS_SECRET_ACCESS_KEY"]!)'
            \(curl) -o '\(other)' '\(key(blobs[1]))' && \(curl) -X PUT -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' --data-binary @'\(other)' '\(key(blobs[0]))'
            """])
        XCTAssertEqual(replace.status, 0, replace.output)
        let v = try verify(node: 1)
        XCTAssertEqual([v.status, Int32(v.checked), Int32(v.failures)], [3, 2, 1], "node 1 holds a copy of both objects")
        XCTAssertEqual(try verify(node: 2).failures, 1)
    }

    func testRemovalWaitsOutTheGracePeriodAndOneCompactorRunsAtATime() throws {
        let id = try kv(["ingest", try scratch.snapshot("in.safetensors")]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(try kv(["rm", id]).status, 0)
        XCTAssertEqual(try kv(["fetch", id, "-o", "-"], node: 2).status, 2, "the row is gone at once")
        XCTAssertEqual(try blobFiles(), 1, "the object waits out the grace period")
        XCTAssertEqual(try verify().orphans, 0, "a doomed object is not an orphan")
        XCTAssertEqual(try kv(["compact"]).status, 0)
        XCTAssertEqual(try blobFiles(), 1, "still within the grace period")

        // Another host holds the compaction lock (a psql session standing in for it).
        let url = URL(string: servers.postgres!)!
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/psql")
        holder.arguments = ["-h", "127.0.0.1", "-p", String(url.port!), "-U", "postgres", "-d", "kvstore", "-qAt",
                            "-c", "SELECT pg_advisory_lock(27510, 1)", "-c", "SELECT pg_sleep(5)"]
        holder.standardOutput = FileHandle.nullDevice
        try holder.run()
        XCTAssertTrue(try wait(timeout: 4) {
            let r = try kv(["compact"], node: 2)
            return r.status == 4 && r.stderr.contains("another compaction")
        }, "a second compactor is turned away with exit 4")
        holder.waitUntilExit()
        XCTAssertTrue(try wait(timeout: 10) { try kv(["compact", "--grace-seconds", "0"], node: 2).status == 0 })
        XCTAssertEqual(try blobFiles(), 0, "collected after the grace period")
    }
}

/// Fetches made from several threads, and when to stop making them.
private final class FetchLog: @unchecked Sendable {
    private let lock = NSLock()
    private var _stopped = false
    private var _outcomes: [(node: Int, index: Int, result: CLI.Result)] = []

    var stopped: Bool { lock.withLock { _stopped } }
    var outcomes: [(node: Int, index: Int, result: CLI.Result)] { lock.withLock { _outcomes } }
    func stop() { lock.withLock { _stopped = true } }
    func append(_ outcome: (node: Int, index: Int, result: CLI.Result)) { lock.withLock { _outcomes.append(outcome) } }
}
