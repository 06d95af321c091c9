import Foundation
import XCTest

/// What a new user runs into first: an ingest that keeps another policy, a mistyped store,
/// usage errors, and the JSON scripts read.
final class FirstUseTests: XCTestCase {
    private func json(_ r: CLI.Result) throws -> Any { try JSONSerialization.jsonObject(with: r.stdoutBytes) }

    func testIngestingAgainWithAnotherPolicySaysSoAndRepackChangesIt() throws {
        let s = try Scratch()
        let input = try s.snapshot("x.safetensors")
        let first = try s.cli.run("ingest", "--policy", "lightkv+int8", input)
        XCTAssertEqual(first.status, 0, first.stderr)
        let id = first.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let stored = try (json(try s.cli.run("show", id, "--json")) as! [String: Any])["policy"] as! String

        let again = try s.cli.run("ingest", "--policy", "none", "--json", input)
        XCTAssertEqual(again.status, 0, again.stderr)
        let lines = again.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, again.stderr)
        XCTAssertTrue(lines[0].contains(id) && lines[0].contains(stored) && lines[0].contains("kvstore repack"), again.stderr)
        let line = try (json(again) as! [[String: Any]])[0]
        XCTAssertEqual(line["already_stored"] as? Bool, true)
        XCTAssertEqual(line["policy"] as? String, stored, "the stored entry's policy, not the one asked for")
        XCTAssertEqual((line["entry"] as? [String: Any])?["id"] as? String, id)
        XCTAssertEqual(try s.cli.run("ingest", "--policy", "lightkv+int8", input).stderr, "", "the same policy again: nothing to say")

        let repack = try s.cli.run("repack", String(id.prefix(8)), "--policy", "none")
        XCTAssertEqual(repack.status, 0, repack.stderr)
        XCTAssertTrue(repack.stdout.contains("\(stored) -> none+zstd3") && repack.stdout.contains("B -> "), repack.stdout)
        let entries = try json(try s.cli.run("ls", "--json")) as! [[String: Any]]
        XCTAssertEqual(entries.map { $0["id"] as? String }, [id], "the same id")
        XCTAssertEqual(entries[0]["policy"] as? String, "none+zstd3")
        XCTAssertEqual(try s.cli.run("fetch", id, "-o", s.path + "/y.safetensors").status, 0)
        XCTAssertEqual(try s.cli.run("verify").status, 0)
        let unchanged = try json(try s.cli.run("repack", id, "--policy", "none", "--json")) as! [[String: Any]]
        XCTAssertEqual(unchanged[0]["outcome"] as? String, "unchanged")
        XCTAssertEqual(try s.cli.run("repack", "ffff", "--policy", "none").status, 2, "an unknown id")
        XCTAssertEqual(try s.cli.run("repack", id, "--policy", "lightkv+int3").status, 1, "a bad policy")
    }

    func testCommandsThatOnlyReadCreateNoStoreAtAMistypedPath() throws {
        let s = try Scratch()
        let typo = s.path + "/typo"
        let commands: [[String]] = [["ls"], ["ls", "--json"], ["show", "ab"], ["fetch", "ab", "-o", "-"], ["verify"], ["stats"],
                                    ["rm", "ab"], ["pin", "ab"], ["compact"], ["repair"], ["repack", "ab", "--policy", "none"]]
        for args in commands {
            let r = try s.cli.run(args + ["--store", typo])
            XCTAssertEqual(r.status, 2, "\(args): \(r.stdout) \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("kvstore: no store at \(typo)"), "\(args): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: typo), "\(args) created \(typo)")
        }
        // A server whose tokens may only read never writes, so it creates nothing either.
        let readOnly = s.path + "/tokens"
        try "reader-token-0123456789 read\n".write(toFile: readOnly, atomically: true, encoding: .utf8)
        chmod(readOnly, 0o600)
        let serve = try s.cli.start(["serve", "--store", typo, "--tokens", readOnly, "--listen", "127.0.0.1:0"],
                                    stdout: FileHandle(forWritingAtPath: "/dev/null"), stderr: FileHandle(forWritingAtPath: "/dev/null"))
        let deadline = Date().addingTimeInterval(20)
        while serve.isRunning && Date() < deadline { usleep(20_000) }
        if serve.isRunning { kill(serve.processIdentifier, SIGKILL); serve.waitUntilExit(); XCTFail("serve with read tokens started on a missing store") }
        XCTAssertEqual(serve.terminationStatus, 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: typo), "serve with read tokens only created \(typo)")
        XCTAssertEqual(try s.cli.run("ingest", "--store", typo, try s.snapshot("x.safetensors")).status, 0, "ingest creates it")
        XCTAssertEqual(try s.cli.run("ls", "--store", typo).status, 0)
    }

    func testUsageErrorsPrintLinesAndVersionIsKnown() throws {
        let s = try Scratch()
        let version = try s.cli.run("--version")
        XCTAssertEqual(version.status, 0, version.stderr)
        XCTAssertEqual(version.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".").count, 3, version.stdout)
        for args in [["ingest", "--polcy", "none", "x"], ["fetch"], ["fetch", "ab", "--dtype", "f64", "-o", "-"]] {
            let r = try s.cli.run(args)
            XCTAssertEqual(r.status, 1, "\(args)")
            XCTAssertFalse(r.stderr.contains("\\n"), "\(args): \(r.stderr)")
            let lines = r.stderr.split(separator: "\n")
            XCTAssertTrue(lines.first?.hasPrefix("kvstore: ") == true && lines.contains { $0.hasPrefix("Usage: kvstore \(args[0])") },
                          "\(args): \(r.stderr)")
        }
        XCTAssertTrue(try s.cli.run("fetch", "ab", "--dtype", "f64", "-o", "-").stderr.contains("--dtype f64: expected f16, bf16 or f32"))
    }

    func testJSONIsSnakeCaseWithNestedObjectsAndPlainSlashes() throws {
        let s = try Scratch()
        let ingest = try s.cli.run("ingest", "--json", "--policy", "lightkv", try s.snapshot("x.safetensors"))
        XCTAssertEqual(ingest.status, 0, ingest.stderr)
        let line = try (json(ingest) as! [[String: Any]])[0]
        XCTAssertEqual(Set(line.keys), ["file", "id", "already_stored", "bytes_in", "bytes_out", "policy", "milliseconds", "entry"])
        let id = line["id"] as! String
        let ls = try s.cli.run("ls", "--json")
        XCTAssertTrue(ls.stdout.contains("\"test/model\"") && !ls.stdout.contains("\\/"), ls.stdout)
        let listed = try (json(ls) as! [[String: Any]])[0]
        XCTAssertTrue(listed["spans"] is [Any] && listed["compression"] is [String: Any] && listed["fidelity"] is [String: Any], "\(listed)")
        XCTAssertEqual(listed["input_dtype"] as? String, "F16")
        XCTAssertEqual(listed["key"] as? String, "key-0")
        XCTAssertEqual(listed as NSDictionary, try json(try s.cli.run("show", id, "--json")) as! NSDictionary, "ls and show print one document")
        XCTAssertEqual(listed as NSDictionary, line["entry"] as! NSDictionary, "and so does ingest")
        let stats = try json(try s.cli.run("stats", "--json")) as! [String: Any]
        XCTAssertEqual(stats["bytes_in"] as? Int, listed["bytes_in"] as? Int)
        XCTAssertEqual(stats["models"] as? [String: Int], ["test/model": 1], "keys that are data are kept as they are")
        for r in [ingest, ls, try s.cli.run("verify", "--json"), try s.cli.run("compact", "--json")] {
            XCTAssertNil(r.stdout.range(of: "\"[a-z]+[A-Z][A-Za-z]*\" :", options: .regularExpression), r.stdout)
        }
    }

    func testListFiltersByModelKeyAndLimit() throws {
        let s = try Scratch()
        let ids = try (0..<3).map { try s.cli.run("ingest", try s.snapshot("x\($0).safetensors", seed: $0)).stdout.trimmingCharacters(in: .whitespacesAndNewlines) }
        let listed = { (args: [String]) throws -> [String] in
            try (self.json(try s.cli.run(["ls", "--json"] + args)) as! [[String: Any]]).map { $0["id"] as! String }
        }
        XCTAssertEqual(try listed(["--model", "test/model"]).sorted(), ids.sorted())
        XCTAssertEqual(try listed(["--model", "other/model"]), [])
        XCTAssertEqual(try listed(["--key", "key-1"]), [ids[1]])
        XCTAssertEqual(try listed(["--limit", "2"]).count, 2)
        XCTAssertEqual(try s.cli.run("ls", "--limit", "0").status, 1)
    }
}
