import Foundation
import Store
import XCTest

/// `kvstore migrate` between two local stores: every entry copied with its record and
/// sources, fetches bit-identical, a re-run does only what is left, a damaged source blob is
/// refused (exit 3) while the rest is copied, and the same store on both sides is refused.
final class MigrateTests: XCTestCase {
    private var scratch: Scratch!

    override func setUpWithError() throws { scratch = try Scratch() }
    override func tearDownWithError() throws { scratch = nil }

    private var a: String { scratch.path + "/a" }
    private var b: String { scratch.path + "/b" }

    func testALocalStoreMigratesWithItsRecordsAndSourcesAndFetchesBitIdentical() throws {
        let ids = try MigrationFixture.populate(a, scratch: scratch, count: 3)
        XCTAssertEqual(try scratch.cli.run("pin", ids[0], "--store", a).status, 0)
        XCTAssertEqual(try scratch.cli.run("fetch", ids[1], "-o", "-", "--store", a).status, 0, "an access to carry over")

        let migrated = try scratch.cli.run("migrate", "--from", a, "--to", b)
        XCTAssertEqual(migrated.status, 0, migrated.stdout + migrated.stderr)
        XCTAssertEqual(migrated.stdout.split(separator: "\n").filter { $0.hasPrefix("copied ") && $0.contains("/3  ") }.count, 3,
                       "a progress line per entry\n" + migrated.stdout)
        XCTAssertTrue(migrated.stdout.contains("already there 0 entries"), migrated.stdout)
        try MigrationFixture.assertSameEntries(a, b, ids: ids, scratch: scratch)
        for id in ids {
            let original = try scratch.cli.run("fetch", id, "-o", "-", "--store", a)
            let copy = try scratch.cli.run("fetch", id, "-o", "-", "--store", b)
            XCTAssertEqual(copy.status, 0, copy.stderr)
            XCTAssertEqual(copy.stdoutBytes, original.stdoutBytes, "fetch from the copy is bit-identical")
        }
        XCTAssertEqual(try scratch.cli.run("verify", "--store", b).status, 0)

        let again = try MigrationFixture.report(scratch.cli.run(["migrate", "--from", a, "--to", b, "--json"]))
        XCTAssertEqual(again.copied, 0)
        XCTAssertEqual(again.alreadyThere, 3, "a second run finds everything there")
    }

    func testADamagedBlobIsRefusedTheRestCopiedAndAReRunDoesWhatIsLeft() throws {
        let ids = try MigrationFixture.populate(a, scratch: scratch, count: 4)
        let damagedBlob = try MigrationFixture.blobPath(of: ids[1], in: a, scratch: scratch)
        let original = try Data(contentsOf: URL(fileURLWithPath: damagedBlob))
        var bytes = original
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: damagedBlob))

        let first = try scratch.cli.run("migrate", "--from", a, "--to", b)
        XCTAssertEqual(first.status, 3, "a damaged source blob: exit 3\n" + first.stdout + first.stderr)
        XCTAssertTrue(first.stdout.contains("DAMAGED") && first.stdout.contains(ids[1]), first.stdout)
        XCTAssertEqual(try MigrationFixture.ids(in: b, scratch: scratch), [ids[0], ids[2], ids[3]], "everything else was copied")
        let name = URL(fileURLWithPath: damagedBlob).lastPathComponent
        let landed = try FileManager.default.subpathsOfDirectory(atPath: b + "/blobs").filter { $0.hasSuffix(name) }
        XCTAssertEqual(landed, [], "nothing of the damaged blob lands")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: b + "/tmp"), [], "no temporary file left")

        // The source repaired and a row lost in the destination: a re-run copies those two only.
        try original.write(to: URL(fileURLWithPath: damagedBlob))
        XCTAssertEqual(try scratch.cli.run("rm", ids[3], "--store", b).status, 0)
        let planned = try MigrationFixture.report(scratch.cli.run(["migrate", "--from", a, "--to", b, "--dry-run", "--json"]))
        XCTAssertEqual([planned.copied, planned.alreadyThere], [2, 2])
        XCTAssertEqual(try MigrationFixture.ids(in: b, scratch: scratch).count, 2, "a dry run changes nothing")
        let resumed = try MigrationFixture.report(scratch.cli.run(["migrate", "--from", a, "--to", b, "--json"]))
        XCTAssertEqual([resumed.copied, resumed.alreadyThere, resumed.damaged], [2, 2, 0])
        try MigrationFixture.assertSameEntries(a, b, ids: ids, scratch: scratch)
    }

    func testTheSameStoreOrAMissingSourceIsRefused() throws {
        _ = try MigrationFixture.populate(a, scratch: scratch, count: 1)
        let same = try scratch.cli.run("migrate", "--from", a, "--to", a + "/../a/")
        XCTAssertEqual(same.status, 1, same.stderr)
        XCTAssertTrue(same.stderr.contains("same store"), same.stderr)
        let sameIndex = try scratch.cli.run("migrate", "--from", a, "--to", b, "--to-index", a)
        XCTAssertEqual(sameIndex.status, 1, sameIndex.stderr)
        let missing = try scratch.cli.run("migrate", "--from", scratch.path + "/typo", "--to", b)
        XCTAssertEqual(missing.status, 2, missing.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.path + "/typo"), "a missing source is not created")
        let dry = try scratch.cli.run("migrate", "--from", a, "--to", b, "--dry-run")
        XCTAssertEqual(dry.status, 0, dry.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: b), "a dry run creates no destination")
    }
}

/// Stores to migrate, and what a migration must have kept.
enum MigrationFixture {
    struct Report {
        var copied: Int
        var alreadyThere: Int
        var damaged: Int
    }

    /// Ingests `count` tiny synthetic snapshots into `store`; returns their ids in id order.
    static func populate(_ store: String, scratch: Scratch, count: Int, environment: [String: String] = [:],
                         extra: [String] = []) throws -> [String] {
        let dir = scratch.path + "/snaps-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // One snapshot is written to a file, several into a directory.
        let synth = try scratch.cli.run("synth", "--preset", "tiny", "--count", String(count), "-o", count == 1 ? dir + "/0.safetensors" : dir)
        XCTAssertEqual(synth.status, 0, synth.stderr)
        var ids: [String] = []
        for file in try FileManager.default.contentsOfDirectory(atPath: dir).sorted() {
            let r = try scratch.cli.run(["ingest", dir + "/" + file, "--store", store, "--policy", "lightkv+int8"] + extra, environment: environment)
            XCTAssertEqual(r.status, 0, r.stderr)
            ids.append(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return ids.sorted()
    }

    static func report(_ result: CLI.Result) throws -> Report {
        guard let json = try? JSONSerialization.jsonObject(with: result.stdoutBytes) as? [String: Any] else {
            throw FleetServers.Failure("migrate printed no JSON (exit \(result.status)): \(result.stdout) \(result.stderr)")
        }
        return Report(copied: json["copied"] as? Int ?? -1, alreadyThere: json["already_there"] as? Int ?? -1,
                      damaged: (json["damaged"] as? [Any])?.count ?? -1)
    }

    static func show(_ id: String, in store: String, scratch: Scratch, _ args: [String] = [], environment: [String: String] = [:]) throws -> [String: Any] {
        let r = try scratch.cli.run(["show", id, "--json", "--store", store] + args, environment: environment)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try JSONSerialization.jsonObject(with: r.stdoutBytes) as? [String: Any] ?? [:]
    }

    static func blobPath(of id: String, in store: String, scratch: Scratch) throws -> String {
        try show(id, in: store, scratch: scratch)["blob_path"] as? String ?? ""
    }

    static func ids(in store: String, scratch: Scratch) throws -> [String] {
        let r = try scratch.cli.run("ls", "--json", "--store", store)
        let rows = try JSONSerialization.jsonObject(with: r.stdoutBytes) as? [[String: Any]] ?? []
        return rows.compactMap { $0["id"] as? String }.sorted()
    }

    /// The rows of `ids` in two local stores are equal field for field (created, last
    /// accessed, access count, pinned included), and so are their sources with span indices.
    static func assertSameEntries(_ a: String, _ b: String, ids: [String], scratch: Scratch,
                                  file: StaticString = #filePath, line: UInt = #line) throws {
        for id in ids {
            // The entry document less where its blob lies on disk, which differs between stores.
            var original = try show(id, in: a, scratch: scratch), copy = try show(id, in: b, scratch: scratch)
            XCTAssertNotNil(original["blob_path"], "show --json prints the entry document", file: file, line: line)
            original["blob_path"] = nil
            copy["blob_path"] = nil
            XCTAssertEqual(copy as NSDictionary, original as NSDictionary, "the row of \(id)", file: file, line: line)
        }
        let sql = "SELECT source, entry_id, span_index FROM sources ORDER BY entry_id, span_index, source"
        let rows = { (store: String) in
            try Database(path: store + "/index.sqlite").query(sql).map { "\($0.text("entry_id") ?? "") \($0.int("span_index") ?? -1) \($0.text("source") ?? "")" }
        }
        let sources = try rows(a)
        XCTAssertFalse(sources.isEmpty, "the fixture's snapshots hold image sources", file: file, line: line)
        XCTAssertEqual(try rows(b), sources, "sources with their span indices", file: file, line: line)
    }
}
