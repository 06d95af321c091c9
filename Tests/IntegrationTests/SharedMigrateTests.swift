import Foundation
import XCTest

/// `kvstore migrate` from a local store into a shared one (live SeaweedFS + PostgreSQL,
/// started by scripts/seaweedfs.sh and scripts/postgres.sh) and back into another local
/// store (named by a store config file): records, sources and fetches come through unchanged; an S3 server that does not
/// answer stops the run with exit 4 and the re-run completes it. Neither server missing is
/// skipped: the test fails saying what to install.
final class SharedMigrateTests: XCTestCase {
    private var scratch: Scratch!
    private var servers: FleetServers!
    private var postgres: String { servers.postgres ?? "" }

    override func setUpWithError() throws {
        scratch = try Scratch()
        do {
            servers = try FleetServers(scratch, postgres: true)
        } catch let skip as XCTSkip {
            // A migration test that does not run proves nothing: fail, saying what is missing.
            throw FleetServers.Failure("\(skip.message ?? "SeaweedFS is not installed"): this test needs it and does not skip")
        }
    }

    override func tearDownWithError() throws {
        servers = nil
        scratch = nil
    }

    private var shared: [String] { ["--store", "s3://kvtest/fleet", "--index", postgres, "--cache", scratch.path + "/cache"] }

    private func kv(_ args: [String], environment extra: [String: String] = [:]) throws -> CLI.Result {
        try scratch.cli.run(args, environment: servers.environment.merging(extra) { $1 })
    }

    func testALocalStoreGoesToS3AndPostgreSQLAndBackUnchanged() throws {
        let a = scratch.path + "/a", c = scratch.path + "/c"
        let ids = try MigrationFixture.populate(a, scratch: scratch, count: 3)
        XCTAssertEqual(try kv(["pin", ids[2], "--store", a]).status, 0)
        XCTAssertEqual(try kv(["fetch", ids[0], "-o", "-", "--store", a]).status, 0, "an access to carry over")
        let toShared = ["migrate", "--from", a, "--to", "s3://kvtest/fleet", "--to-index", postgres, "--cache", scratch.path + "/cache"]

        let down = try kv(toShared, environment: ["AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"])
        XCTAssertEqual(down.status, 4, "S3 does not answer: transient\n" + down.stdout + down.stderr)
        XCTAssertTrue(down.stderr.contains("run the same command again"), down.stderr)
        let none = try kv(["ls", "--json"] + shared)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: none.stdoutBytes) as? [Any])?.count, 0, "no row without its blob\n" + none.stderr)

        let up = try MigrationFixture.report(kv(toShared + ["--json"]))
        XCTAssertEqual([up.copied, up.alreadyThere, up.damaged], [3, 0, 0])
        // Back through a store config file, whose endpoint wins over a misleading variable.
        let config = scratch.path + "/fleet.toml"
        try """
            [blobs]
            url = "s3://kvtest/fleet"
            endpoint = "\(servers.environment["AWS_ENDPOINT_URL_S3"] ?? "")"
            [index]
            url = "\(postgres)"
            [cache]
            dir = "\(scratch.path)/cache-c"
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let back = try MigrationFixture.report(kv(["migrate", "--from-config", config, "--to", c, "--json"],
                                                  environment: ["AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"]))
        XCTAssertEqual([back.copied, back.alreadyThere, back.damaged], [3, 0, 0])
        try MigrationFixture.assertSameEntries(a, c, ids: ids, scratch: scratch)

        try FileManager.default.removeItem(atPath: scratch.path + "/cache")  // fetches below download from S3
        for id in ids {
            let original = try kv(["fetch", id, "-o", "-", "--store", a])
            let fromShared = try kv(["fetch", id, "-o", "-"] + shared)
            let roundTrip = try kv(["fetch", id, "-o", "-", "--store", c])
            XCTAssertEqual(fromShared.status, 0, fromShared.stderr)
            XCTAssertEqual(fromShared.stdoutBytes, original.stdoutBytes, "fetch from S3 + PostgreSQL is bit-identical")
            XCTAssertEqual(roundTrip.stdoutBytes, original.stdoutBytes, "and from the store migrated back")
        }
        let again = try MigrationFixture.report(kv(toShared + ["--json"]))
        XCTAssertEqual([again.copied, again.alreadyThere], [0, 3], "a re-run finds everything there")
    }
}
