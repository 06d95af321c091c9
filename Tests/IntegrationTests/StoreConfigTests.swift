import Foundation
import XCTest

/// `--store-config FILE`, `$KVSTORE_CONFIG` and a job spec's `store_config` name a store the
/// way `--store` and `--index` do: here a local store whose index lives in another folder.
final class StoreConfigCLITests: XCTestCase {
    private var scratch: Scratch!
    private var config: String!

    override func setUpWithError() throws {
        scratch = try Scratch()
        try FileManager.default.createDirectory(atPath: scratch.path + "/etc", withIntermediateDirectories: true)
        config = scratch.path + "/etc/store.toml"
        try """
            [blobs]
            url = "../shared/blobs"     # relative to this file
            [index]
            url = "../shared/index"
            """.write(toFile: config, atomically: true, encoding: .utf8)
    }

    override func tearDownWithError() throws { scratch = nil }

    private func ids(_ ls: CLI.Result) throws -> [String] {
        XCTAssertEqual(ls.status, 0, ls.stderr)
        return (try JSONSerialization.jsonObject(with: Data(ls.stdout.utf8)) as! [[String: Any]]).map { $0["id"] as! String }.sorted()
    }

    func testAStoreConfigNamesTheBlobsAndTheIndexForEveryCommand() throws {
        let input = try scratch.snapshot("x.safetensors")
        let ingest = try scratch.cli.run(["ingest", input, "--policy", "lightkv+int8", "--store-config", config])
        XCTAssertEqual(ingest.status, 0, ingest.stderr)
        let id = ingest.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let shared = scratch.path + "/shared"
        XCTAssertTrue(FileManager.default.fileExists(atPath: shared + "/index/index.sqlite"), "the index is where [index] says")
        XCTAssertFalse(FileManager.default.fileExists(atPath: shared + "/blobs/index.sqlite"))
        XCTAssertEqual(try FileManager.default.subpathsOfDirectory(atPath: shared + "/blobs/blobs").filter { $0.hasSuffix(".kvpack") }.count, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.path + "/store"), "$KVSTORE_HOME is not touched")

        // The same snapshot through a plain local store comes back with the same bytes.
        XCTAssertEqual(try scratch.cli.run("ingest", input, "--policy", "lightkv+int8").stdout.trimmingCharacters(in: .whitespacesAndNewlines), id)
        let viaConfig = try scratch.cli.run(["fetch", id, "-o", "-", "--store-config", config])
        XCTAssertEqual(viaConfig.status, 0, viaConfig.stderr)
        let local = try scratch.cli.run("fetch", id, "-o", "-")
        XCTAssertEqual(local.status, 0, local.stderr)
        XCTAssertEqual(viaConfig.stdoutBytes, local.stdoutBytes)

        // $KVSTORE_CONFIG stands in for --store-config when no --store is given; --store still wins.
        XCTAssertEqual(try ids(try scratch.cli.run(["ls", "--json"], environment: ["KVSTORE_CONFIG": config])), [id])
        let verify = try scratch.cli.run(["verify"], environment: ["KVSTORE_CONFIG": config])
        XCTAssertEqual(verify.status, 0, verify.stderr + verify.stdout)
        let empty = scratch.path + "/empty"
        let named = try scratch.cli.run(["ls", "--json", "--store", empty], environment: ["KVSTORE_CONFIG": config])
        XCTAssertEqual(named.status, 2, "--store wins, and names no store yet")
        XCTAssertTrue(named.stderr.contains("no store at \(empty)"), named.stderr)
    }

    func testOptionsThatNameAPartOfTheStoreAreRefusedBesideAConfig() throws {
        let both = try scratch.cli.run(["ls", "--store-config", config, "--index", scratch.path + "/other"])
        XCTAssertEqual(both.status, 1)
        XCTAssertTrue(both.stderr.contains("--index cannot be combined with --store-config"), both.stderr)
        let fromEnvironment = try scratch.cli.run(["ls", "--cache-size", "1GB"], environment: ["KVSTORE_CONFIG": config])
        XCTAssertEqual(fromEnvironment.status, 1)
        XCTAssertTrue(fromEnvironment.stderr.contains("--cache-size cannot be combined with $KVSTORE_CONFIG (\(config!))"), fromEnvironment.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.path + "/shared"), "nothing is created")
    }

    func testABadConfigIsExit1NamingTheFileLineAndKeyAndAnExposedSecretIsWarnedAbout() throws {
        let bad = scratch.path + "/etc/bad.toml"
        try "[blobs]\nurl = \"s3://kv-fleet/prod\"\naccess_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"s3cr3t\"\n"
            .write(toFile: bad, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: bad)
        let r = try scratch.cli.run(["stats", "--store-config", bad])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("kvstore: \(bad):2: blobs.url: an s3:// store needs its index named: index.url ="), r.stderr)
        XCTAssertTrue(r.stderr.contains("kvstore: warning: \(bad) holds a secret (blobs.secret_access_key)"), r.stderr)
        XCTAssertFalse(r.stderr.contains("s3cr3t"), "the secret itself is never printed")
    }

    func testAJobSpecNamesItsStoreByAStoreConfig() throws {
        let inbox = scratch.path + "/inbox"
        try FileManager.default.createDirectory(atPath: inbox, withIntermediateDirectories: true)
        for seed in 0..<2 { try scratch.snapshot("inbox/f\(seed).safetensors", seed: seed) }
        let spec = scratch.path + "/etc/ingest.toml"
        try """
            kind = "ingest"
            store_config = "store.toml"
            [ingest]
            inbox = "../inbox"
            inputs = "delete"
            once = true
            settle_seconds = 0
            interval_seconds = 0.05
            """.write(toFile: spec, atomically: true, encoding: .utf8)
        let check = try scratch.cli.run(["job", "check", spec])
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertTrue(check.stdout.contains("store   \(scratch.path)/etc/../shared/blobs (index \(scratch.path)/etc/../shared/index)"), check.stdout)
        let run = try scratch.cli.run(["job", "run", spec])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(try ids(try scratch.cli.run(["ls", "--json", "--store-config", config])).count, 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.path + "/store"), "$KVSTORE_HOME is not touched")

        try "kind = \"compact\"\nstore_config = \"store.toml\"\nstore = \"/srv/kv\"\n".write(toFile: spec, atomically: true, encoding: .utf8)
        let both = try scratch.cli.run(["job", "check", spec])
        XCTAssertEqual(both.status, 1)
        XCTAssertTrue(both.stderr.contains("\(spec):3: store: set, but store_config names the store"), both.stderr)
    }

    /// The documented shape: blobs in S3, the index in PostgreSQL, a node cache, all from one
    /// file whose settings win over an environment that names another server and another key.
    func testAStoreConfigNamesAnS3StoreWithAPostgreSQLIndexAndWinsOverTheEnvironment() throws {
        let servers = try FleetServers(scratch, postgres: true)
        let s3 = servers.environment
        try """
            [blobs]
            url = "s3://\(FleetServers.bucket)/configured"
            endpoint = "\(s3["AWS_ENDPOINT_URL_S3"]!)"
            region = "\(s3["AWS_REGION"]!)"
            access_key_id = "\(s3["AWS_ACCESS_KEY_ID"]!)"
            secret_access_key = "\(s3["AWS_SECRET_ACCESS_KEY"]!)"
            [index]
            url = "\(servers.postgres!)"
            [cache]
            dir = "../cache"
            size = "1GB"
            """.write(toFile: config, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: config)
        let misleading = ["AWS_ENDPOINT_URL_S3": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "WRONG", "AWS_SECRET_ACCESS_KEY": "wrong",
                          "AWS_SESSION_TOKEN": "wrong"]
        let input = try scratch.snapshot("x.safetensors")
        let ingest = try scratch.cli.run(["ingest", input, "--store-config", config], environment: misleading)
        XCTAssertEqual(ingest.status, 0, ingest.stderr)
        XCTAssertEqual(ingest.stderr, "", "a file only its owner reads is not warned about")
        let id = ingest.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(try ids(try scratch.cli.run(["ls", "--json"], environment: misleading.merging(["KVSTORE_CONFIG": config]) { $1 })), [id])
        try FileManager.default.removeItem(atPath: scratch.path + "/cache")  // the fetch downloads
        let fetched = try scratch.cli.run(["fetch", id, "-o", "-", "--store-config", config], environment: misleading)
        XCTAssertEqual(fetched.status, 0, fetched.stderr)
        XCTAssertEqual(try scratch.cli.run("ingest", input).stdout, ingest.stdout, "the same id as a local store's")
        XCTAssertEqual(try scratch.cli.run("fetch", id, "-o", "-").stdoutBytes, fetched.stdoutBytes, "bit-identical to the local store's")
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.path + "/shared"), "nothing local but the cache")
    }
}
