import Foundation
import XCTest
import LightKV

/// `kvstore compact` as cron runs it: beside fetches, within a budget, never losing a blob.
final class CompactTests: XCTestCase {
    private func ingest(_ s: Scratch, _ seeds: Range<Int>, layers: Int = 3) throws -> [String] {
        let files = try seeds.map { try s.snapshot("in\($0).safetensors", seed: $0, layers: layers) }
        let r = try s.cli.run(["ingest", "--policy", "none"] + files)
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.stdout.split(separator: "\n").map(String.init)
    }

    private func entries(_ s: Scratch) throws -> [[String: Any]] {
        try JSONSerialization.jsonObject(with: Data(try s.cli.run("ls", "--json").stdout.utf8)) as! [[String: Any]]
    }

    private func report(_ r: CLI.Result) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
    }

    /// Keys and values of every layer of a kvsnap file.
    private func tensors(_ path: String) throws -> [[UInt8]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try data.withUnsafeBytes { b in
            let snap = try Snapshot(bytes: b)
            return snap.layers.flatMap { [Array(snap.data($0.key)), Array(snap.data($0.value))] }
        }
    }

    func testCompactionUnderConcurrentFetchesFailsNoFetch() throws {
        let s = try Scratch()
        let ids = try ingest(s, 0..<6, layers: 6)
        var reference: [String: [[UInt8]]] = [:]
        for id in ids {
            let out = s.path + "/ref-\(id)"
            XCTAssertEqual(try s.cli.run("fetch", id, "-o", out).status, 0)
            reference[id] = try tensors(out)
        }
        let tally = FetchTally()
        let expected = reference
        let group = DispatchGroup()
        for t in 0..<2 {
            group.enter()
            Thread {
                var n = 0
                while tally.running {
                    let id = ids[(n + t) % ids.count]
                    let out = s.path + "/fetch-\(t)-\(n)"
                    let r = try? s.cli.run("fetch", id, "-o", out)
                    let same = (try? self.tensors(out)) == expected[id]
                    tally.record(r?.status == 0 && same ? nil : "\(id): status \(r?.status ?? -1) \(r?.stderr ?? "") same \(same)")
                    try? FileManager.default.removeItem(atPath: out)
                    n += 1
                }
                group.leave()
            }.start()
        }
        var repacked = 0
        for policy in ["none+lz4", "none+zstd9", "none+lz4", "none+zstd9"] {
            let r = try s.cli.run("compact", "--cold-days", "0", "--cold-policy", policy, "--json")
            XCTAssertEqual(r.status, 0, r.stderr)
            repacked += (try report(r)["repacked"] as! [String]).count
        }
        tally.stop()
        group.wait()
        let (fetches, failures) = tally.result
        // An entry fetched after a round started is not cold for that round (its
        // last_accessed is newer than the cutoff), so a round may skip one or two.
        XCTAssertGreaterThan(repacked, 12, "most entries re-packed in most rounds")
        XCTAssertGreaterThan(fetches, 10)
        XCTAssertEqual(failures, [], "\(failures.count) of \(fetches) fetches failed")
        // With the fetchers stopped, one more round leaves every entry in the cold policy.
        XCTAssertEqual(try s.cli.run("compact", "--cold-days", "0", "--cold-policy", "none+zstd9").status, 0)
        XCTAssertEqual(Set(try entries(s).map { $0["policy"] as! String }), ["none+zstd9"])
        XCTAssertEqual(Set(try entries(s).map { $0["id"] as! String }), Set(ids), "ids survive re-packing")
        let verify = try s.cli.run("verify", "--json")
        XCTAssertEqual(verify.status, 0)
        XCTAssertEqual((try report(verify)["orphans"] as! [Any]).count, 0, "old blobs are deleted after the swap")
    }

    func testMembersSurviveAColdRepackThatMergesFurther() throws {
        let s = try Scratch()
        let input = try s.snapshot("x.safetensors", layers: 4)
        // dense=0: the snapshot's random keys would make its image text-dense (docs/design/dense.md).
        let r = try s.cli.run("ingest", "--policy", "lightkv:dense=0", input)
        XCTAssertEqual(r.status, 0, r.stderr)
        let id = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let repack = try s.cli.run("compact", "--cold-days", "0", "--cold-policy", "lightkv25:dense=0+int8", "--json")
        XCTAssertEqual(repack.status, 0, repack.stderr)
        XCTAssertEqual(try report(repack)["repacked"] as? [String], [id])
        try s.withFetchedAndExpanded(id) { before, after in
            XCTAssertLessThan(before.layers[3].count, 20, "the cold policy merged further")
            for i in 0..<4 {
                XCTAssertEqual(after.positions(layer: i), (0..<26).map { Int32($0) }, "layer \(i)")
                XCTAssertEqual(after.sizes(layer: i), Array(repeating: 1, count: 26))
            }
        }
    }

    func testEvictsLeastRecentlyFetchedUnpinnedEntriesUntilUnderBudget() throws {
        let s = try Scratch()
        let ids = try ingest(s, 0..<5)
        let sizes = Dictionary(uniqueKeysWithValues: try entries(s).map { ($0["id"] as! String, $0["bytes_out"] as! Int) })
        XCTAssertEqual(try s.cli.run("pin", ids[0]).status, 0)
        usleep(20_000)
        for id in [ids[4], ids[3]] { XCTAssertEqual(try s.cli.run("fetch", id, "-o", s.path + "/o").status, 0); usleep(20_000) }
        // Room for the pinned entry and the two most recently fetched ones.
        let budget = sizes[ids[0]]! + sizes[ids[4]]! + sizes[ids[3]]!

        let dry = try s.cli.run("compact", "--budget", "\(budget)", "--dry-run", "--json")
        XCTAssertEqual(dry.status, 0, dry.stderr)
        XCTAssertEqual(Set(try report(dry)["evicted"] as! [String]), [ids[1], ids[2]])
        XCTAssertEqual(try entries(s).count, 5, "a dry run changes nothing")

        let r = try s.cli.run("compact", "--budget", "\(budget)", "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let rep = try report(r)
        XCTAssertEqual(Set(rep["evicted"] as! [String]), [ids[1], ids[2]], "oldest unpinned first")
        XCTAssertEqual(rep["evicted_bytes"] as? Int, sizes[ids[1]]! + sizes[ids[2]]!)
        XCTAssertEqual(Set(try entries(s).map { $0["id"] as! String }), [ids[0], ids[3], ids[4]])
        XCTAssertLessThanOrEqual(rep["bytes_after"] as! Int, budget)

        let human = try s.cli.run("compact", "--budget", "1")
        XCTAssertEqual(human.status, 0)
        XCTAssertTrue(human.stdout.contains("evicted      2 entries"), human.stdout)
        XCTAssertTrue(human.stdout.contains("still over budget: the rest is pinned"), human.stdout)
        XCTAssertEqual(try entries(s).map { $0["id"] as! String }, [ids[0]])
        let verify = try s.cli.run("verify", "--json")
        XCTAssertEqual((try report(verify)["orphans"] as! [Any]).count, 0, "evicted blobs are deleted")
    }

    func testOrphansAndTemporaryFilesAreDeletedOnlyAfterTheGracePeriod() throws {
        let s = try Scratch()
        let ids = try ingest(s, 0..<2)
        let blob = (try JSONSerialization.jsonObject(with: Data(try s.cli.run("show", ids[0], "--json").stdout.utf8)) as! [String: Any])["blob_path"] as! String
        // A blob no row names, where a crash between publishing and indexing leaves one.
        try FileManager.default.createDirectory(atPath: s.path + "/store/blobs/00", withIntermediateDirectories: true)
        let orphan = s.path + "/store/blobs/00/00orphan.kvpack"
        try Data(contentsOf: URL(fileURLWithPath: blob)).write(to: URL(fileURLWithPath: orphan))
        let temp = s.path + "/store/tmp/stale.kvpack.tmp"
        try Data(repeating: 7, count: 100).write(to: URL(fileURLWithPath: temp))

        let young = try report(try s.cli.run("compact", "--json"))
        XCTAssertEqual(young["orphans_removed"] as? Int, 0, "young files may belong to an ingest in flight")
        XCTAssertEqual(young["temporary_files_removed"] as? Int, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: orphan))

        let dry = try report(try s.cli.run("compact", "--grace-seconds", "0", "--dry-run", "--json"))
        XCTAssertEqual(dry["orphans_removed"] as? Int, 1)
        XCTAssertTrue(FileManager.default.fileExists(atPath: orphan), "a dry run deletes nothing")

        let r = try report(try s.cli.run("compact", "--grace-seconds", "0", "--json"))
        XCTAssertEqual(r["orphans_removed"] as? Int, 1)
        XCTAssertEqual(r["temporary_files_removed"] as? Int, 1)
        XCTAssertEqual(r["temporary_bytes"] as? Int, 100)
        XCTAssertFalse(FileManager.default.fileExists(atPath: orphan))
        XCTAssertFalse(FileManager.default.fileExists(atPath: temp))
        XCTAssertTrue(FileManager.default.fileExists(atPath: blob), "a referenced blob is never collected")
        XCTAssertEqual(r["verified"] as? Int, 2)
        XCTAssertEqual(try s.cli.run("verify").status, 0)
    }

    func testCompactRejectsABadBudgetAndAPolicyWithoutDays() throws {
        let s = try Scratch()
        let bad = try s.cli.run("compact", "--budget", "50 parsecs")
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("50 parsecs"), bad.stderr)
        XCTAssertEqual(try s.cli.run("compact", "--cold-policy", "none").status, 1)
        XCTAssertEqual(try s.cli.run("compact", "--cold-days", "1", "--cold-policy", "bogus").status, 1)
    }
}

/// Counts fetches made from several threads and the ones that failed.
private final class FetchTally: @unchecked Sendable {
    private let lock = NSLock()
    private var isRunning = true
    private var fetches = 0
    private var failures: [String] = []

    var running: Bool { lock.withLock { isRunning } }
    func stop() { lock.withLock { isRunning = false } }
    func record(_ failure: String?) {
        lock.withLock {
            fetches += 1
            if let failure { failures.append(failure) }
        }
    }
    var result: (Int, [String]) { lock.withLock { (fetches, failures) } }
}
