import Foundation
import XCTest
import LightKV

/// `kvstore watch` on an inbox that anyone may write to: links where its folders should be,
/// producers that close a file many times, names at the length limit or with newlines, and
/// inputs that echo huge values. The daemon writes only inside the inbox, claims only
/// complete files, gives every input an end, and keeps its log one event a line.
final class HostileInboxTests: XCTestCase {
    let fast = ["--settle", "0.05", "--interval", "0.05"]

    /// A folder outside the inbox that must stay empty.
    private func elsewhere(_ s: Scratch) throws -> String {
        let dir = s.path + "/elsewhere"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    // MARK: Item 5: links in place of the inbox's folders

    func testASymlinkedFailedOrDoneFolderIsRefusedAtStartAndNothingIsWrittenThroughIt() throws {
        for folder in ["failed", "done", ".work"] {
            let s = try Scratch()
            let inbox = try InboxFixture(s)
            let outside = try elsewhere(s)
            XCTAssertEqual(symlink(outside, inbox.inbox + "/" + folder), 0)
            _ = try s.write("inbox/bad.safetensors", [UInt8](repeating: 7, count: 100))
            try inbox.drop("good.safetensors", seed: 1)
            let r = try s.cli.run(["watch", inbox.inbox, "--once"] + fast)
            XCTAssertEqual(r.status, 3, folder + ": " + r.stderr)
            XCTAssertTrue(r.stderr.contains("\(inbox.inbox)/\(folder) is a symbolic link"), r.stderr)
            XCTAssertEqual(InboxFixture.names(outside), [], "\(folder): nothing written through the link")
            XCTAssertEqual(inbox.inInbox, ["bad.safetensors", "good.safetensors"], "inputs untouched")
        }
    }

    /// An inbox in the store's blob folder took blobs for bad inputs and moved them to
    /// failed/; done/ set to the inbox ingested every input again, forever; intervals of NaN,
    /// an infinity or 1e10 seconds trapped or spun. Each is refused before anything moves.
    func testAnInboxInTheStoreADoneThatIsTheInboxAndUntimeableIntervalsAreRefused() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        let id = try s.cli.run("ingest", try s.snapshot("in.safetensors", seed: 3)).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let blobs = s.cli.store + "/blobs"
        let folder = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: blobs).first)
        let before = try FileManager.default.contentsOfDirectory(atPath: blobs + "/" + folder)
        let r = try s.cli.run(["watch", blobs + "/" + folder, "--once"] + fast)
        XCTAssertEqual(r.status, 3, r.stderr)
        XCTAssertTrue(r.stderr.contains("is inside the store's own folder"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: blobs + "/" + folder), before, "no blob moved, nothing made")
        XCTAssertEqual(try s.cli.run("verify").status, 0, id)

        try inbox.drop("good.safetensors", seed: 1)
        let loop = try s.cli.run(["watch", inbox.inbox, "--once", "--done", inbox.inbox + "/"] + fast)
        XCTAssertEqual(loop.status, 3, loop.stderr)
        XCTAssertTrue(loop.stderr.contains("is the inbox"), loop.stderr)
        XCTAssertEqual(try s.cli.run(["watch", inbox.inbox, "--once", "--done", inbox.inbox + "/failed/x"] + fast).status, 3)
        for bad in [["--interval", "inf"], ["--interval", "nan"], ["--interval", "1e10"], ["--settle", "nan"]] {
            let flag = try s.cli.run(["watch", inbox.inbox, "--once"] + bad)
            XCTAssertEqual(flag.status, 1, bad.joined(separator: " ") + ": " + flag.stderr)
        }
        XCTAssertEqual(inbox.inInbox, ["good.safetensors"], "the input untouched")
    }

    /// A file the daemon's user may not read (another producer's, mode 0600) was taken for one
    /// still being written: it stayed in the inbox without a word, and `--once` never ended.
    /// It is claimed and fails with its reason. (The daemon runs as `nobody`: root reads all.)
    func testAFileTheDaemonMayNotReadFailsWithItsReason() throws {
        guard getuid() == 0, let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].first(where: FileManager.default.isExecutableFile) else {
            throw XCTSkip("needs root and setpriv to run the daemon as another user")
        }
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        try inbox.drop("ok.safetensors", seed: 1)
        let secret = try inbox.drop("secret.safetensors", seed: 2)
        for path in [s.path, inbox.inbox, s.cli.store] { XCTAssertEqual(chown(path, 65534, 65534), 0) }
        _ = try FleetServers.shell(["-c", "chown -R 65534:65534 '\(s.cli.store)' '\(inbox.inbox)'"])
        XCTAssertEqual(chown(secret, 0, 0), 0)
        XCTAssertEqual(chmod(secret, 0o600), 0)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: setpriv)
        p.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", CLI.binary, "watch", inbox.inbox, "--once", "--store", s.cli.store] + fast
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(30)
        while p.isRunning && Date() < deadline { usleep(100_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "--once ended")
        XCTAssertEqual(inbox.inDone, ["ok.safetensors"])
        XCTAssertEqual(InboxFixture.names(inbox.failed), ["secret.safetensors", "secret.safetensors.error.json"])
        let report = (try? String(contentsOfFile: inbox.failed + "/secret.safetensors.error.json", encoding: .utf8)) ?? ""
        XCTAssertTrue(report.contains("Permission denied"), report)
    }

    func testAFolderReplacedByASymlinkWhileRunningStopsTheDaemonAndIsNeverWrittenThrough() throws {
        for (folder, input) in [("failed", "bad.safetensors"), ("done", "good.safetensors")] {
            let s = try Scratch()
            let inbox = try InboxFixture(s)
            let outside = try elsewhere(s)
            let daemon = try inbox.start(fast)
            XCTAssertTrue(inbox.wait(timeout: 10) { inbox.log().contains("watching") }, inbox.log())
            // The folder is moved aside and a link put in its place.
            XCTAssertEqual(rename(inbox.inbox + "/" + folder, inbox.inbox + "/" + folder + ".moved"), 0)
            XCTAssertEqual(symlink(outside, inbox.inbox + "/" + folder), 0)
            if input == "bad.safetensors" {
                _ = try s.write("staging/bad", [UInt8](repeating: 7, count: 100))
                XCTAssertEqual(rename(s.path + "/staging/bad", inbox.inbox + "/" + input), 0)
            } else {
                try inbox.drop(input, seed: 2)
            }
            let stopped = inbox.wait(timeout: 10) { !daemon.isRunning }
            XCTAssertTrue(stopped, "the daemon stops: \(inbox.log())")
            if !stopped { kill(daemon.processIdentifier, SIGKILL) }
            daemon.waitUntilExit()
            XCTAssertEqual(daemon.terminationStatus, 3, inbox.log())
            XCTAssertTrue(inbox.log().contains("is no longer the folder the daemon opened at start"), inbox.log())
            XCTAssertEqual(InboxFixture.names(outside), [], "\(folder): nothing written through the link")
            XCTAssertEqual(InboxFixture.names(inbox.inbox + "/" + folder + ".moved"), [], "nor into the moved folder")
            XCTAssertEqual(inbox.inInbox, [input], "the input is back in the inbox, not lost: \(inbox.log())")
            XCTAssertEqual(inbox.inWork, [])
        }
    }

    // MARK: Item 6: the settle rule holds for inotify events too

    func testAFileWrittenInOpenAppendCloseRoundsIsClaimedOnlyOnceComplete() throws {
        for mode in [[], ["--poll"]] {
            let s = try Scratch()
            let inbox = try InboxFixture(s)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: try s.snapshot("staging/full", seed: 4, layers: 6)))
            let daemon = try inbox.start(mode + ["--settle", "0.6", "--interval", "0.05"])
            XCTAssertTrue(inbox.wait(timeout: 10) { inbox.log().contains("watching") }, inbox.log())
            // Each round opens the file, appends, closes it, and pauses (shorter than the settle time).
            let path = inbox.inbox + "/rounds.safetensors"
            try writeInRounds(bytes, to: path)
            XCTAssertTrue(inbox.wait(timeout: 10) { inbox.inDone == ["rounds.safetensors"] }, "mode \(mode): \(inbox.log())")
            // A name that is not UTF-8 (escaped by a rename) is renamed only once complete: at first
            // sight, each later open of the old name made a new file, and the input went to failed/
            // in pieces.
            let raw: [UInt8] = Array((inbox.inbox + "/caf").utf8) + [0xE9] + Array(".safetensors".utf8)
            try writeInRounds(bytes, to: String(decoding: raw, as: UTF8.self), raw: raw)
            XCTAssertTrue(inbox.wait(timeout: 10) { inbox.inDone.count == 2 }, "mode \(mode): \(inbox.log())")
            kill(daemon.processIdentifier, SIGTERM)
            daemon.waitUntilExit()
            XCTAssertEqual(InboxFixture.names(inbox.failed), [], "mode \(mode): never claimed at an early close: \(inbox.log())")
            XCTAssertEqual(try inbox.storedKeys(), ["key-4"])
        }
    }

    /// Eight rounds of open (append), write an eighth, close, pause 0.15 s (under the settle time).
    private func writeInRounds(_ bytes: Data, to path: String, raw: [UInt8]? = nil) throws {
        let rounds = 8
        for r in 0..<rounds {
            let range = (bytes.count * r / rounds)..<(bytes.count * (r + 1) / rounds)
            let name = (raw ?? Array(path.utf8)).map { CChar(bitPattern: $0) } + [0]
            let fd = open(name, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            XCTAssertGreaterThanOrEqual(fd, 0)
            bytes.subdata(in: range).withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count) }
            close(fd)
            usleep(150_000)
        }
    }

    // MARK: Item 10: names, logs, echoed values, and an end for every input

    func testABadInputWithANameTooLongForItsReportStillEndsInFailedWithOne() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        let name = String(repeating: "x", count: 238) + ".safetensors"  // 250 bytes: NAME.error.json would be 261
        _ = try s.write("inbox/" + name, [UInt8](repeating: 7, count: 100))
        let r = try s.cli.run(["watch", inbox.inbox, "--once"] + fast)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(inbox.inInbox, [], r.stderr)
        XCTAssertEqual(inbox.inWork, [])
        let failed = InboxFixture.names(inbox.failed)
        XCTAssertEqual(failed.count, 2, "\(failed)")
        let stem = try XCTUnwrap(failed.first { !$0.hasSuffix(".error.json") })
        XCTAssertEqual(failed, [stem, stem + ".error.json"])
        XCTAssertTrue(stem.hasPrefix(String(repeating: "x", count: 200)), stem)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: inbox.failed + "/" + stem + ".error.json"))) as! [String: String]
        XCTAssertEqual(report["file"], name, "the report names the input as it was dropped")
    }

    func testA255ByteGoodNameTakenInDoneIsMovedThereUnderAShortenedName() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        let name = String(repeating: "y", count: 243) + ".safetensors"  // 255 bytes: NAME.1 would be 257
        try FileManager.default.createDirectory(atPath: inbox.done, withIntermediateDirectories: true)
        _ = try s.write("inbox/done/" + name, [1, 2, 3])
        try inbox.drop(name, seed: 3)
        let r = try s.cli.run(["watch", inbox.inbox, "--once"] + fast)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(inbox.inInbox, [], "not retried forever: \(r.stderr)")
        XCTAssertEqual(try inbox.storedKeys(), ["key-3"])
        let done = inbox.inDone
        XCTAssertEqual(done.count, 2, "\(done)")
        XCTAssertTrue(done.contains(name))
        XCTAssertTrue(done.contains { $0 != name && $0.hasSuffix(".1") && $0.utf8.count <= 255 }, "\(done)")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: inbox.done + "/" + name)), Data([1, 2, 3]), "the earlier file is kept")
    }

    func testANewlineInAFileNameCannotForgeALogLine() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        let forged = "2001-01-01T00:00:00+0000 info kvstore.watch: file=x id=0 [Pipeline] ingested"
        try inbox.drop("a\n" + forged + " \"b\".safetensors", seed: 5)
        let r = try s.cli.run(["watch", inbox.inbox, "--once"] + fast)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try inbox.storedKeys(), ["key-5"])
        let lines = r.stderr.split(separator: "\n")
        XCTAssertFalse(lines.contains { $0.hasPrefix("2001-01-01") }, r.stderr)
        XCTAssertEqual(lines.filter { $0.hasSuffix("] ingested") }.count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("file=\"a\\n2001-01-01T00:00:00+0000 info kvstore.watch: file=x id=0 [Pipeline] ingested \\\"b\\\".safetensors\""), r.stderr)
    }

    func testAHugeTensorNameGivesAShortErrorNotSeventyKilobytes() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "m", spans: [.text(0, 4, role: .prompt)]))
        b.add("layers.0.key", dtype: .f16, shape: [1, 4, 8], floats: [Float](repeating: 0.5, count: 32))
        b.add("layers.0.value", dtype: .f16, shape: [1, 4, 8], floats: [Float](repeating: 0.5, count: 32))
        b.add(String(repeating: "n", count: 70_000), dtype: .f16, shape: [1], floats: [0])
        let file = try s.write("inbox/long-name.safetensors", b.bytes())
        let ingest = try s.cli.run("ingest", file)
        XCTAssertEqual(ingest.status, 3)
        XCTAssertLessThan(ingest.stderr.utf8.count, 1_000, ingest.stderr)
        XCTAssertTrue(ingest.stderr.contains("…(70000 bytes)"), ingest.stderr)

        let r = try s.cli.run(["watch", inbox.inbox, "--once"] + fast)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertLessThan(r.stderr.utf8.count, 4_000, "the daemon's whole log")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: inbox.failed + "/long-name.safetensors.error.json"))) as! [String: String]
        XCTAssertLessThan(report["message"]!.utf8.count, 1_000)
        XCTAssertTrue(report["message"]!.contains("tensor nnnn"), report["message"]!)
    }

    func testEntriesThatAreNotFilesEndInFailedUnreadAndNonUTF8NamesAreIngested() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        let outside = try s.snapshot("outside.safetensors", seed: 6)
        XCTAssertEqual(symlink(outside, inbox.inbox + "/link.safetensors"), 0)
        XCTAssertEqual(mkfifo(inbox.inbox + "/pipe.safetensors", 0o644), 0)
        // A file whose name is not UTF-8: "bad\xFF.safetensors".
        let staged = try s.snapshot("staging/bad-name", seed: 7)
        let rawName: [CChar] = Array("\(inbox.inbox)/bad".utf8CString.dropLast()) + [CChar(bitPattern: 0xFF)] + Array(".safetensors".utf8CString)
        XCTAssertEqual(rename(staged, rawName), 0)

        let r = try s.cli.run(["watch", inbox.inbox, "--once"] + fast)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(inbox.inInbox, [], r.stderr)
        XCTAssertEqual(try inbox.storedKeys(), ["key-7"], "the link was not followed")
        XCTAssertEqual(inbox.inDone, ["bad%FF.safetensors"])
        XCTAssertEqual(InboxFixture.names(inbox.failed), ["link.safetensors", "link.safetensors.error.json",
                                                          "pipe.safetensors", "pipe.safetensors.error.json"])
        for (name, what) in [("link", "is a symbolic link"), ("pipe", "is not a regular file")] {
            let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: inbox.failed + "/\(name).safetensors.error.json"))) as! [String: String]
            XCTAssertEqual(report["message"], "\(inbox.inbox)/\(name).safetensors \(what)" + (name == "pipe" ? " (a FIFO, socket or device)" : "")
                + ": only regular files are ingested, and the daemon never follows a link in the inbox (copy or move the file itself in)")
        }
        var st = stat()
        XCTAssertEqual(lstat(inbox.failed + "/link.safetensors", &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFLNK, "the link itself was moved")
        XCTAssertTrue(FileManager.default.fileExists(atPath: outside), "its target untouched")
    }
}
