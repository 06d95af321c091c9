import Foundation
import XCTest
import LightKV

/// The `kvstore` binary as users run it: output, exit codes, and what lands on disk.
final class CommandTests: XCTestCase {
    func testIngestThenFetchGivesBackTheSameTensors() throws {
        let s = try Scratch()
        let input = try s.snapshot("x.safetensors")
        let ingest = try s.cli.run("ingest", input)
        XCTAssertEqual(ingest.status, 0, ingest.stderr)
        let id = ingest.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(id.count, 64)
        let output = s.path + "/y.safetensors"
        let fetch = try s.cli.run("fetch", String(id.prefix(8)), "-o", output)
        XCTAssertEqual(fetch.status, 0, fetch.stderr)
        let a = try Data(contentsOf: URL(fileURLWithPath: input)), b = try Data(contentsOf: URL(fileURLWithPath: output))
        try a.withUnsafeBytes { ra in
            try b.withUnsafeBytes { rb in
                let x = try Snapshot(bytes: ra), y = try Snapshot(bytes: rb)
                for i in 0..<3 {
                    XCTAssertEqual(Array(x.data(x.layers[i].key)), Array(y.data(y.layers[i].key)))
                    XCTAssertEqual(Array(x.data(x.layers[i].value)), Array(y.data(y.layers[i].value)))
                }
            }
        }
        let name = (output as NSString).lastPathComponent
        let beside = try FileManager.default.contentsOfDirectory(atPath: (output as NSString).deletingLastPathComponent)
        XCTAssertEqual(beside.filter { $0.hasPrefix(name + ".") }, [], "no temporary file is left beside the output")
    }

    /// With every descriptor in use (`ulimit -n` of 6 to 24), a command reports what it could not
    /// open; libdispatch starting its event loop late, with none left, stopped it with SIGILL
    /// (at 8 on this machine with the runtime's backtracer off; on, it holds descriptors of its
    /// own and the crash moves).
    func testACommandOutOfDescriptorsReportsItAndIsNotKilled() throws {
        let s = try Scratch()
        XCTAssertEqual(try s.cli.run("synth", "--preset", "tiny", "--questions", "3", "-o", s.path + "/qs").status, 0)
        let files = try FileManager.default.contentsOfDirectory(atPath: s.path + "/qs").map { s.path + "/qs/" + $0 }
        XCTAssertEqual(try s.cli.run(["ingest"] + files).status, 0)
        for limit in 6...24 {
            let p = try s.cli.start(["verify", "--store", s.path + "/store"], stdout: FileHandle.nullDevice, stderr: FileHandle.nullDevice,
                                    environment: ["SWIFT_BACKTRACE": "enable=no"], descriptorLimit: limit)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationReason, .exit, "ulimit -n \(limit): killed by signal \(p.terminationStatus)")
            XCTAssertTrue([0, 3, 4].contains(p.terminationStatus), "ulimit -n \(limit): exit \(p.terminationStatus)")
        }
    }

    func testFetchToStandardOutput() throws {
        let s = try Scratch()
        let id = try s.cli.run("ingest", try s.snapshot("x.safetensors")).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let fetch = try s.cli.run("fetch", id, "-o", "-", "--dtype", "f32")
        XCTAssertEqual(fetch.status, 0, fetch.stderr)
        try fetch.stdoutBytes.withUnsafeBytes { XCTAssertEqual(try Snapshot(bytes: $0).dtype, .f32) }
    }

    func testExitCodes() throws {
        let s = try Scratch()
        let good = try s.snapshot("good.safetensors")
        let bad = try s.write("bad.safetensors", [9, 9, 9])
        XCTAssertEqual(try s.cli.run("ingest", good).status, 0)
        XCTAssertEqual(try s.cli.run("fetch", "deadbeef", "-o", s.path + "/z").status, 2, "unknown id")
        XCTAssertEqual(try s.cli.run("show", "--key", "nope").status, 2, "unknown key")
        let invalid = try s.cli.run("ingest", bad)
        XCTAssertEqual(invalid.status, 3, "invalid snapshot")
        XCTAssertTrue(invalid.stderr.contains("bad.safetensors"), invalid.stderr)
        XCTAssertEqual(try s.cli.run("ingest", "--policy", "lightkv+int3", good).status, 1, "bad policy")
        XCTAssertEqual(try s.cli.run("fetch").status, 1, "missing argument")
        XCTAssertEqual(try s.cli.run("fetch", "ab", "--dtype", "f8", "-o", "-").status, 1, "bad dtype")
        XCTAssertEqual(try s.cli.run("ingest", s.path + "/does-not-exist.safetensors").status, 3, "missing input")
        // `--store "$STORE"` with the variable unset once meant ~/.kvstore.
        let empty = try s.cli.run("ingest", "--store", "", good)
        XCTAssertEqual(empty.status, 1, empty.stderr)
        XCTAssertTrue(empty.stderr.contains("--store is empty"), empty.stderr)
    }

    func testAnErrorIsOneLineWhateverTheFileNameHolds() throws {
        let s = try Scratch()
        let forged = try s.write("bad\nkvstore: ingested everything fine.safetensors", [1, 2, 3])
        let r = try s.cli.run("ingest", forged)
        XCTAssertEqual(r.status, 3)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("bad\\nkvstore: ingested"), r.stderr)
    }

    func testIngestNamesTheProblemAndKeepsGoing() throws {
        let s = try Scratch()
        let nan = try s.snapshot("nan.safetensors", nan: true)
        let good = try s.snapshot("good.safetensors", seed: 4)
        let r = try s.cli.run("ingest", nan, good)
        XCTAssertEqual(r.status, 3)
        XCTAssertTrue(r.stderr.contains("layers.2.key holds NaN or Inf"), r.stderr)
        XCTAssertEqual(r.stdout.split(separator: "\n").count, 1, "the good file is still ingested")
        XCTAssertTrue(FileManager.default.fileExists(atPath: nan), "a rejected input is never deleted")
    }

    func testListShowStatsAndRemove() throws {
        let s = try Scratch()
        let id = try s.cli.run("ingest", try s.snapshot("x.safetensors")).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let ls = try s.cli.run("ls", "--json")
        let entries = try JSONSerialization.jsonObject(with: Data(ls.stdout.utf8)) as! [[String: Any]]
        XCTAssertEqual(entries.count, 1)
        XCTAssertEqual(entries[0]["id"] as? String, id)
        XCTAssertTrue(try s.cli.run("show", String(id.prefix(6))).stdout.contains("test/model"))
        XCTAssertTrue(try s.cli.run("stats").stdout.contains("entries      1"))
        XCTAssertEqual(try s.cli.run("rm", id).status, 0)
        XCTAssertEqual(try s.cli.run("show", id).status, 2)
        XCTAssertEqual(try s.cli.run("verify").status, 0)
    }

    func testVerifyFailsWithExitCode3WhenABlobIsMissingOrDamaged() throws {
        let s = try Scratch()
        let a = try s.cli.run("ingest", try s.snapshot("a.safetensors", seed: 1)).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let b = try s.cli.run("ingest", try s.snapshot("b.safetensors", seed: 2)).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(try s.cli.run("verify").status, 0)
        let blob = { (id: String) throws -> String in
            let shown = try JSONSerialization.jsonObject(with: Data(try s.cli.run("show", id, "--json").stdout.utf8)) as! [String: Any]
            return shown["blob_path"] as! String
        }
        let pathA = try blob(a), pathB = try blob(b)
        var data = try Data(contentsOf: URL(fileURLWithPath: pathA))
        data[data.count / 2] ^= 0x01
        try data.write(to: URL(fileURLWithPath: pathA))
        let damaged = try s.cli.run("verify")
        XCTAssertEqual(damaged.status, 3)
        XCTAssertTrue(damaged.stdout.contains("FAIL \(a)"), damaged.stdout)
        XCTAssertEqual(try s.cli.run("fetch", a, "-o", s.path + "/out").status, 3, "a damaged entry is never served")
        XCTAssertFalse(FileManager.default.fileExists(atPath: s.path + "/out"))
        try FileManager.default.removeItem(atPath: pathB)
        let missing = try s.cli.run("verify", b)
        XCTAssertEqual(missing.status, 3)
        XCTAssertTrue(missing.stdout.contains("missing"), missing.stdout)
    }

    func testTwoProcessesIngestingTheSameFileLeaveOneEntry() throws {
        let s = try Scratch()
        let files = try (0..<4).map { try s.snapshot("f\($0).safetensors", seed: $0, layers: 6) }
        // Create the store first so both racers open the same one.
        XCTAssertEqual(try s.cli.run("ingest", try s.snapshot("first.safetensors", seed: 9)).status, 0)
        for file in files {
            let racers = try (0..<2).map { _ in try s.cli.start(["ingest", file], stdout: FileHandle.nullDevice, stderr: FileHandle.nullDevice) }
            for r in racers { r.waitUntilExit(); XCTAssertEqual(r.terminationStatus, 0) }
        }
        let ls = try s.cli.run("ls", "--json")
        let entries = try JSONSerialization.jsonObject(with: Data(ls.stdout.utf8)) as! [[String: Any]]
        XCTAssertEqual(entries.count, 5)
        let verify = try s.cli.run("verify", "--json")
        let report = try JSONSerialization.jsonObject(with: Data(verify.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(verify.status, 0)
        XCTAssertEqual((report["orphans"] as! [Any]).count, 0, "the loser's blob is the winner's blob or removed")
    }
}
