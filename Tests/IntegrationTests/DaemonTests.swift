import Foundation
import XCTest
import LightKV

/// `kvstore watch` as a fleet runs it: killed at any moment, fed bad files, raced by a
/// second daemon, stopped by SIGTERM — and no input is ever lost or stored twice.
final class DaemonTests: XCTestCase {
    /// Fast scans so the tests spend their time ingesting, not waiting.
    let fast = ["--settle", "0.05", "--interval", "0.05"]

    func testKillNineAtRandomMomentsLosesNothingAndStoresNothingTwice() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        var generator = SystemRandomNumberGenerator()
        var dropped: [String] = []
        var kills = 0, killedMidIngest = 0
        // Rounds of: drop a few files, start the daemon, kill -9 it after a random delay.
        for round in 0..<12 {
            for k in 0..<5 {
                let seed = round * 5 + k
                dropped.append(try inbox.drop("f\(seed).safetensors", seed: seed, layers: 8))
            }
            let before = inbox.inDone.count
            let daemon = try inbox.start(["--jobs", "2"] + fast)
            switch round % 3 {
            case 0:
                // Any moment: during start-up, recovery, scanning or ingesting.
                usleep(UInt32.random(in: 20_000...300_000, using: &generator))
            case 1:
                // Just after a first file of the round is done, while the next ones are in flight.
                _ = inbox.wait(timeout: 5) { inbox.inDone.count > before }
                usleep(UInt32.random(in: 0...30_000, using: &generator))
            default:
                // As soon as a file is claimed: mid-ingest.
                _ = inbox.wait(timeout: 5, every: 500) { !inbox.inWork.isEmpty }
            }
            kill(daemon.processIdentifier, SIGKILL)
            daemon.waitUntilExit()
            if daemon.terminationReason == .uncaughtSignal { kills += 1 }
            if !inbox.inWork.isEmpty { killedMidIngest += 1 }
            try assertEveryInputIsSomewhereOnce(inbox, dropped.count)
        }
        XCTAssertGreaterThanOrEqual(kills, 10, "the daemon was killed mid-run, not after it had finished")
        print("kill -9 rounds: \(kills) killed, \(killedMidIngest) with files claimed but not finished")
        XCTAssertGreaterThanOrEqual(killedMidIngest, 2, "some kills hit files in flight")

        // A clean run recovers what the killed ones left in their work folders.
        let finish = try s.cli.run(["watch", inbox.inbox, "--once", "--jobs", "2"] + fast)
        XCTAssertEqual(finish.status, 0, finish.stderr)
        XCTAssertEqual(inbox.inDone.count, 60, "every input ends in done/: \(inbox.inInbox) \(inbox.inWork)")
        XCTAssertEqual(inbox.inInbox, [])
        XCTAssertEqual(inbox.inWork, [])
        XCTAssertEqual(InboxFixture.names(inbox.failed), [])
        let keys = try inbox.storedKeys()
        XCTAssertEqual(keys, (0..<60).map { "key-\($0)" }.sorted(), "each input stored exactly once")
        let verify = try inbox.verify()
        XCTAssertEqual(verify.status, 0)
        XCTAssertEqual(verify.failures, 0, "no index row without its blob")
        // Orphans (a blob published just before a kill, its row never written) are what
        // compaction collects.
        let compact = try s.cli.run("compact", "--grace-seconds", "0")
        XCTAssertEqual(compact.status, 0, compact.stderr)
        XCTAssertEqual(try inbox.verify().orphans, 0)
    }

    /// After any kill: each input is in exactly one of inbox, a work folder, done/; every
    /// one in done/ is stored; no row lacks its blob.
    private func assertEveryInputIsSomewhereOnce(_ inbox: InboxFixture, _ count: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let places = inbox.inInbox + inbox.inWork + inbox.inDone
        XCTAssertEqual(places.sorted(), (0..<count).map { "f\($0).safetensors" }.sorted(), "inputs lost or duplicated", file: file, line: line)
        let keys = Set(try inbox.storedKeys())
        for name in inbox.inDone {
            let seed = name.dropFirst().prefix { $0.isNumber }
            XCTAssertTrue(keys.contains("key-\(seed)"), "\(name) is in done/ but not stored", file: file, line: line)
        }
        XCTAssertEqual(try inbox.verify().failures, 0, "an index row without its blob", file: file, line: line)
    }

    func testMalformedInputsEndInFailedWithAReasonWhileGoodOnesAreIngested() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        let good = try Data(contentsOf: URL(fileURLWithPath: try s.snapshot("staging/full", seed: 9)))
        var hugeHeader = [UInt8](repeating: 0xFF, count: 8)
        hugeHeader[7] = 0x0F
        hugeHeader += Array("{\"layers.0.key\":{}}".utf8)
        var wrongShape = KVSnapBuilder(metadata: SnapshotMetadata(model: "m", spans: [.text(0, 4, role: .prompt)]))
        wrongShape.add("layers.0.key", dtype: .f16, shape: [2, 4, 8], floats: [Float](repeating: 0.5, count: 64))
        wrongShape.add("layers.0.value", dtype: .f16, shape: [2, 5, 8], floats: [Float](repeating: 0.5, count: 80))
        let bad: [String: [UInt8]] = [
            "truncated.safetensors": Array(good.prefix(good.count / 2)),
            "random.safetensors": (0..<4096).map { _ in UInt8.random(in: 0...255) },
            "huge-header.safetensors": hugeHeader,
            "wrong-shape.safetensors": wrongShape.bytes(),
        ]
        for (name, bytes) in bad { _ = try s.write("inbox/" + name, bytes) }
        try s.snapshot("inbox/nan.safetensors", seed: 5, nan: true)
        for seed in 0..<3 { try inbox.drop("good\(seed).safetensors", seed: seed) }

        let r = try s.cli.run(["watch", inbox.inbox, "--once"] + fast)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(inbox.inDone, ["good0.safetensors", "good1.safetensors", "good2.safetensors"])
        XCTAssertEqual(try inbox.storedKeys(), ["key-0", "key-1", "key-2"])
        let expected = [
            "truncated.safetensors": "truncated",
            "random.safetensors": "invalid kvsnap",
            "huge-header.safetensors": "header length",
            "wrong-shape.safetensors": "shape mismatch: layers.0.value",
            "nan.safetensors": "layers.2.key holds NaN or Inf",
        ]
        XCTAssertEqual(InboxFixture.names(inbox.failed).filter { !$0.hasSuffix(".error.json") }, expected.keys.sorted())
        for (name, reason) in expected {
            let json = try Data(contentsOf: URL(fileURLWithPath: inbox.failed + "/" + name + ".error.json"))
            let report = try JSONSerialization.jsonObject(with: json) as! [String: String]
            XCTAssertEqual(report["file"], name)
            XCTAssertFalse(report["message"]!.contains(".work"), "the input is named where the user put it")
            XCTAssertEqual(report["stage"], "validate", name)
            XCTAssertEqual(report["policy"], "none+zstd3")
            XCTAssertNotNil(report["time"])
            XCTAssertTrue(report["message"]?.contains(reason) == true, "\(name): \(report["message"] ?? "")")
        }
    }

    func testAFileStillBeingWrittenIsNotIngestedHalfWritten() throws {
        for mode in [[], ["--poll"]] {
            let s = try Scratch()
            let inbox = try InboxFixture(s)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: try s.snapshot("staging/full", seed: 3, layers: 6)))
            let daemon = try inbox.start(mode + ["--settle", "0.2", "--interval", "0.05"])
            // The producer writes the final name directly, pausing longer than the settle time.
            let path = inbox.inbox + "/slow.safetensors"
            FileManager.default.createFile(atPath: path, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            let parts = 4
            for p in 0..<parts {
                let range = (bytes.count * p / parts)..<(bytes.count * (p + 1) / parts)
                handle.write(bytes.subdata(in: range))
                usleep(400_000)
            }
            try handle.close()
            XCTAssertTrue(inbox.wait(timeout: 10) { inbox.inDone == ["slow.safetensors"] }, "mode \(mode): \(inbox.log())")
            kill(daemon.processIdentifier, SIGTERM)
            daemon.waitUntilExit()
            XCTAssertEqual(daemon.terminationStatus, 0)
            XCTAssertEqual(InboxFixture.names(inbox.failed), [], "mode \(mode): never claimed half-written: \(inbox.log())")
            XCTAssertEqual(try inbox.storedKeys(), ["key-3"])
        }
    }

    func testTwoDaemonsOnOneInboxIngestEachFileOnce() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        for seed in 0..<30 { try inbox.drop("f\(seed).safetensors", seed: seed) }
        let daemons = try (0..<2).map { try inbox.start(["--jobs", "2"] + fast, log: "watch\($0).log") }
        XCTAssertTrue(inbox.wait(timeout: 30) { inbox.inDone.count == 30 }, "done: \(inbox.inDone.count)")
        for d in daemons { kill(d.processIdentifier, SIGTERM) }
        for d in daemons { d.waitUntilExit(); XCTAssertEqual(d.terminationStatus, 0) }
        let logs = (0..<2).map { inbox.log("watch\($0).log") }
        let ingested = logs.map { $0.components(separatedBy: "] ingested").count - 1 }
        XCTAssertEqual(ingested.reduce(0, +), 30, "each file ingested by exactly one daemon: \(ingested)")
        XCTAssertFalse(logs.joined().contains("already stored"), "no file was processed twice")
        XCTAssertEqual(try inbox.storedKeys().count, 30)
        XCTAssertEqual(inbox.inWork, [])
    }

    func testTheSameSnapshotUnderTwoNamesIsStoredOnce() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        try inbox.drop("a.safetensors", seed: 7)
        let r = try s.cli.run(["watch", inbox.inbox, "--once"] + fast)
        XCTAssertEqual(r.status, 0, r.stderr)
        try inbox.drop("copy-of-a.safetensors", seed: 7)
        let again = try s.cli.run(["watch", inbox.inbox, "--once"] + fast)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stderr.contains("already stored"), again.stderr)
        XCTAssertEqual(inbox.inDone, ["a.safetensors", "copy-of-a.safetensors"])
        XCTAssertEqual(try inbox.storedKeys(), ["key-7"])
    }

    /// The same snapshot stored before under a lossy policy: a daemon storing exactly, told to
    /// delete its inputs, once deleted the only exact copy as "already stored". It keeps it in
    /// failed/ with a report that says why; a damaged index at start is named with the way back.
    func testAnInputStoredBeforeUnderALossierPolicyIsKeptAndADamagedIndexIsNamed() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        let path = try inbox.drop("precious.safetensors", seed: 4)
        let staged = s.path + "/staged.safetensors"
        XCTAssertEqual(rename(path, staged), 0)
        XCTAssertEqual(try s.cli.run("ingest", "--policy", "lightkv+int8", staged).status, 0)
        XCTAssertEqual(rename(staged, path), 0)
        let r = try s.cli.run(["watch", inbox.inbox, "--once", "--delete", "--policy", "none"] + fast)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("already stored under a lossier policy"), r.stderr)
        XCTAssertEqual(InboxFixture.names(inbox.failed), ["precious.safetensors", "precious.safetensors.error.json"])
        let report = try String(contentsOfFile: inbox.failed + "/precious.safetensors.error.json", encoding: .utf8)
        XCTAssertTrue(report.contains("lossier than this daemon's none"), report)

        let index = s.cli.store + "/index.sqlite"
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: index + suffix) }
        try Data(repeating: 0x5a, count: 4096).write(to: URL(fileURLWithPath: index))
        let damaged = try s.cli.run(["watch", inbox.inbox, "--once"] + fast)
        XCTAssertNotEqual(damaged.status, 0)
        XCTAssertTrue(damaged.stderr.contains(index) && damaged.stderr.contains("kvstore repair"), damaged.stderr)
    }

    /// A file that crashed every daemon that ingested it was adopted first by the next one and
    /// crashed it too, forever. Once five daemons stopped while ingesting it, it is set aside in
    /// failed/, and the rest of the inbox is ingested.
    func testAFileThatStoppedFiveDaemonsIsSetAsideAndTheRestIsIngested() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        let dead = inbox.work + "/4d7c7d5e-0000-4000-8000-000000000000"
        try FileManager.default.createDirectory(atPath: dead, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dead + "/.lock", contents: nil)
        let held = try inbox.drop("poison.safetensors", seed: 2)
        XCTAssertEqual(rename(held, dead + "/poison.safetensors"), 0)
        try inbox.drop("good.safetensors", seed: 3)
        // Five ingests of it began and never ended (what each start records on the file).
        let mark = Process()
        mark.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        mark.arguments = ["-c", "import os, sys; os.setxattr(sys.argv[1], 'user.kvstore.ingests', b'5')", dead + "/poison.safetensors"]
        try mark.run()
        mark.waitUntilExit()
        guard mark.terminationStatus == 0 else { throw XCTSkip("this filesystem keeps no user extended attributes") }
        let r = try s.cli.run(["watch", inbox.inbox, "--once"] + fast)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(InboxFixture.names(inbox.failed), ["poison.safetensors", "poison.safetensors.error.json"])
        let report = try String(contentsOfFile: inbox.failed + "/poison.safetensors.error.json", encoding: .utf8)
        XCTAssertTrue(report.contains("5 daemons stopped"), report)
        XCTAssertEqual(inbox.inDone, ["good.safetensors"])
    }

    /// A killed ingest's temporary pack stayed in the node's tmp/ until a compaction ran on
    /// that node (on a fleet, maybe never); a daemon clears such files when it starts, and
    /// leaves a fresh one alone.
    func testADaemonClearsStaleTemporaryFilesWhenItStarts() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        let old = s.cli.store + "/tmp/killed.kvpack.tmp", fresh = s.cli.store + "/tmp/fresh.kvpack.tmp"
        for path in [old, fresh] { FileManager.default.createFile(atPath: path, contents: Data(repeating: 1, count: 1000)) }
        var times = [timeval(tv_sec: Int(Date().timeIntervalSince1970) - 7200, tv_usec: 0), timeval(tv_sec: Int(Date().timeIntervalSince1970) - 7200, tv_usec: 0)]
        XCTAssertEqual(utimes(old, &times), 0)
        let r = try s.cli.run(["watch", inbox.inbox, "--once"] + fast)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: old))
        XCTAssertTrue(FileManager.default.fileExists(atPath: fresh))
    }

    func testCompactionCollectingEveryOrphanAtOnceBesideADaemonLosesNothing() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        for seed in 0..<30 { try inbox.drop("f\(seed).safetensors", seed: seed) }
        let daemon = try inbox.start(["--jobs", "2"] + fast)
        // Grace 0: a blob published a moment before its row is fair game, so the rule
        // "collect only under the write lock, index only a present blob" is what keeps it.
        var rounds = 0
        while inbox.inDone.count < 30 && rounds < 200 {
            let r = try s.cli.run("compact", "--grace-seconds", "0", "--verify-sample", "2")
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            rounds += 1
        }
        XCTAssertTrue(inbox.wait(timeout: 20) { inbox.inDone.count == 30 }, inbox.log())
        kill(daemon.processIdentifier, SIGTERM)
        daemon.waitUntilExit()
        XCTAssertGreaterThan(rounds, 1)
        XCTAssertEqual(InboxFixture.names(inbox.failed), [])
        XCTAssertEqual(try inbox.storedKeys().count, 30)
        let verify = try inbox.verify()
        XCTAssertEqual(verify.status, 0)
        XCTAssertEqual(verify.failures, 0, "no index row without its blob")
    }

    func testADatabaseBusyFailureLeavesTheInputInTheInboxAndIsRetried() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        let daemon = try inbox.start(fast, environment: ["KVSTORE_BUSY_TIMEOUT_MS": "100"])
        defer { daemon.terminate(); daemon.waitUntilExit() }
        // Another process holds the index's write lock for 1.5 s.
        let locker = Process()
        locker.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        locker.arguments = ["python3", "-c", """
            import sqlite3, sys, time
            c = sqlite3.connect(sys.argv[1], isolation_level=None)
            c.execute("BEGIN IMMEDIATE"); print("locked", flush=True); time.sleep(1.5); c.execute("ROLLBACK")
            """, s.path + "/store/index.sqlite"]
        let out = Pipe()
        locker.standardOutput = out
        try locker.run()
        XCTAssertTrue(String(decoding: out.fileHandleForReading.availableData, as: UTF8.self).hasPrefix("locked"))
        try inbox.drop("busy.safetensors", seed: 1)
        XCTAssertTrue(inbox.wait(timeout: 15) { inbox.inDone == ["busy.safetensors"] }, inbox.log())
        locker.waitUntilExit()
        let log = inbox.log()
        XCTAssertTrue(log.contains("transient failure, will retry"), log)
        XCTAssertTrue(log.contains("stage=index"), log)
        XCTAssertEqual(InboxFixture.names(inbox.failed), [], "a transient failure never sends an input to failed/")
        XCTAssertEqual(try inbox.storedKeys(), ["key-1"])
    }

    func testSIGTERMFinishesWhatIsInFlightAndExitsZero() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        for seed in 0..<20 { try inbox.drop("f\(seed).safetensors", seed: seed, layers: 12) }
        let daemon = try inbox.start(["--jobs", "2", "--delete"] + fast)
        XCTAssertTrue(inbox.wait(timeout: 20) { inbox.inInbox.count <= 17 })
        kill(daemon.processIdentifier, SIGTERM)
        daemon.waitUntilExit()
        XCTAssertEqual(daemon.terminationReason, .exit)
        XCTAssertEqual(daemon.terminationStatus, 0, inbox.log())
        XCTAssertTrue(inbox.log().contains("stopping"), inbox.log())
        XCTAssertEqual(inbox.inWork, [], "nothing left claimed after a graceful stop")
        XCTAssertEqual(InboxFixture.names(inbox.work), [], "the daemon's work folder is removed")
        let left = Set(inbox.inInbox.map { String($0.dropFirst().prefix { $0.isNumber }) })
        let stored = Set(try inbox.storedKeys().map { String($0.dropFirst(4)) })
        XCTAssertTrue(left.isDisjoint(with: stored), "a stored input was deleted, a left one was not")
        XCTAssertEqual(left.union(stored), Set((0..<20).map(String.init)), "nothing lost: left \(left), stored \(stored)")
        XCTAssertEqual(try inbox.verify().failures, 0)
    }
}

/// `kvstore job run` and `job check` with specs like the ones in jobs/.
final class JobCommandTests: XCTestCase {
    func testJobRunIngestsAndCompactsAsTheSpecsSay() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        for seed in 0..<3 { try inbox.drop("f\(seed).safetensors", seed: seed) }
        let ingest = s.path + "/ingest.toml"
        try """
            kind = "ingest"
            store = "store"        # relative to this file
            [ingest]
            inbox = "inbox"
            policy = "none+lz4"
            inputs = "delete"
            once = true
            settle_seconds = 0.05
            interval_seconds = 0.05
            """.write(toFile: ingest, atomically: true, encoding: .utf8)
        let check = try s.cli.run("job", "check", ingest)
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertTrue(check.stdout.contains("none+lz4"), check.stdout)
        let run = try CLI(store: "/nonexistent-so-the-spec-decides").run("job", "run", ingest)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(inbox.inInbox, [])
        XCTAssertEqual(InboxFixture.names(inbox.done), [], "inputs = delete")
        XCTAssertEqual(try inbox.storedKeys(), ["key-0", "key-1", "key-2"])

        let compact = s.path + "/compact.toml"
        try """
            kind = "compact"
            store = "store"
            [compact]
            cold_days = 0
            cold_policy = "none+zstd9"
            """.write(toFile: compact, atomically: true, encoding: .utf8)
        let r = try s.cli.run("job", "run", compact)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("re-packed    3 entries"), r.stdout)
        let ls = try JSONSerialization.jsonObject(with: Data(try s.cli.run("ls", "--json").stdout.utf8)) as! [[String: Any]]
        XCTAssertEqual(Set(ls.map { $0["policy"] as! String }), ["none+zstd9"])
    }

    func testJobCheckNamesTheBadField() throws {
        let s = try Scratch()
        let spec = s.path + "/bad.toml"
        try "kind = \"compact\"\n[compact]\nbudget = \"lots\"\n".write(toFile: spec, atomically: true, encoding: .utf8)
        let r = try s.cli.run("job", "check", spec)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("bad.toml:3: compact.budget: \"lots\" is not a byte count"), r.stderr)
    }
}
