import Foundation
import LightKV
import Store
import XCTest

/// The orphan rule (docs/DESIGN.md, "The orphan rule"): a valid blob is never deleted because
/// a row is missing; only what was removed on purpose, damaged files and temporaries go.
final class OrphanRuleTests: XCTestCase {
    private let fast = ["--settle", "0.05", "--interval", "0.05"]

    private func index(_ s: Scratch) -> String { s.path + "/store/index.sqlite" }

    private func ingest(_ s: Scratch, seed: Int, policy: String = "none") throws -> String {
        let r = try s.cli.run("ingest", "--policy", policy, try s.snapshot("in\(seed).safetensors", seed: seed))
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func fetched(_ s: Scratch, _ id: String) throws -> Data? {
        let r = try s.cli.run("fetch", id, "-o", "-")
        return r.status == 0 ? r.stdoutBytes : nil
    }

    private func blobFiles(_ s: Scratch) -> [String] {
        let root = s.path + "/store/blobs"
        return ((try? FileManager.default.subpathsOfDirectory(atPath: root)) ?? []).filter { $0.hasSuffix(".kvpack") }.sorted()
    }

    /// Copies the index files (the database and its WAL) to `to`, as a file-level backup does.
    private func copyIndex(from: String, to: String) throws {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: to + suffix) }
        for suffix in ["", "-wal"] where FileManager.default.fileExists(atPath: from + suffix) {
            try FileManager.default.copyItem(atPath: from + suffix, toPath: to + suffix)
        }
    }

    private func deleteIndex(_ s: Scratch) {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: index(s) + suffix) }
    }

    func testARestoredIndexKeepsEveryEntryStoredSinceTheBackup() throws {
        let s = try Scratch()
        let a = try ingest(s, seed: 1)
        try copyIndex(from: index(s), to: s.path + "/backup.sqlite")
        let b = try ingest(s, seed: 2, policy: "lightkv+int8"), c = try ingest(s, seed: 3)
        let expected = try [a, b, c].map { try XCTUnwrap(try fetched(s, $0)) }
        deleteIndex(s)
        try copyIndex(from: s.path + "/backup.sqlite", to: index(s))
        let compact = try s.cli.run("compact", "--grace-seconds", "0")
        XCTAssertEqual(compact.status, 0, compact.stdout + compact.stderr)
        XCTAssertTrue(compact.stdout.contains("2 adopted"), compact.stdout)
        for (id, bytes) in zip([a, b, c], expected) {
            XCTAssertEqual(try fetched(s, id), bytes, "\(id) fetches bit-identically after the restore")
        }
        XCTAssertEqual(blobFiles(s).count, 3)
    }

    func testADeletedOrEmptiedIndexCostsNoBlobAndCompactionAdoptsThem() throws {
        let s = try Scratch()
        let ids = try (1...3).map { try ingest(s, seed: $0) }
        let expected = try ids.map { try XCTUnwrap(try fetched(s, $0)) }
        for damage in ["deleted", "emptied"] {
            deleteIndex(s)
            if damage == "emptied" { FileManager.default.createFile(atPath: index(s), contents: Data()) }
            let r = try s.cli.run("compact", "--grace-seconds", "0")
            XCTAssertEqual(r.status, 0, "\(damage): \(r.stdout) \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("3 adopted"), "\(damage): \(r.stdout)")
            for (id, bytes) in zip(ids, expected) { XCTAssertEqual(try fetched(s, id), bytes, "\(damage): \(id)") }
        }
    }

    func testARemovedEntryStaysRemovedAndAReingestedOneStays() throws {
        let s = try Scratch()
        let a = try ingest(s, seed: 1)
        let blob = try XCTUnwrap(blobFiles(s).first)
        let path = s.path + "/store/blobs/" + blob
        try FileManager.default.copyItem(atPath: path, toPath: s.path + "/kept.kvpack")
        XCTAssertEqual(try s.cli.run("rm", a).status, 0)
        // A crash between rm's transaction and its unlink: the blob is still there, its
        // tombstone too (put back by hand here, as the crash would have left them).
        try FileManager.default.copyItem(atPath: s.path + "/kept.kvpack", toPath: path)
        try setModified(path, Date().timeIntervalSince1970 - 60)
        try tombstone(s, blob: String(blob.dropFirst(3).dropLast(7)), at: Date().timeIntervalSince1970 - 30)
        var r = try s.cli.run("compact", "--grace-seconds", "0")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(blobFiles(s), [], "the removed entry's blob is deleted, not adopted: \(r.stdout)")
        XCTAssertNil(try fetched(s, a), "a removed entry never comes back")

        // The same blob published again after its tombstone (the entry ingested anew; a
        // restored index kept the tombstone, not the new row): newer than the tombstone, adopted.
        try FileManager.default.copyItem(atPath: s.path + "/kept.kvpack", toPath: path)
        try tombstone(s, blob: String(blob.dropFirst(3).dropLast(7)), at: Date().timeIntervalSince1970 - 30)
        r = try s.cli.run("compact", "--grace-seconds", "0")
        XCTAssertTrue(r.stdout.contains("1 adopted"), r.stdout)
        XCTAssertNotNil(try fetched(s, a))
    }

    /// An index restored from a backup that holds the segment's tombstone but not the row of
    /// an entry naming it: the entry's part is an orphan, and is adopted with its segment
    /// before tombstoned blobs are collected (collected first, the segment left the part
    /// unrecognised for good).
    func testAnOrphanPartIsAdoptedWithItsTombstonedSegment() throws {
        let s = try Scratch()
        let id = try s.cli.run("ingest", try s.question("q1.safetensors", question: 1)).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let root = try StoreRoot(path: s.path + "/store")
        let record = try XCTUnwrap(try root.index.entry(id: id))
        let segment = try XCTUnwrap(record.segment)
        let old = Date().timeIntervalSince1970 - 120
        for name in record.blobs { try setModified(root.blobs.location(name), old) }
        try Database(path: index(s)).query("DELETE FROM entries WHERE id = ?", [.text(id)])
        try tombstone(s, blob: segment, at: old + 60)
        let r = try s.cli.run("compact", "--grace-seconds", "0")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("1 adopted"), r.stdout)
        XCTAssertNotNil(try fetched(s, id), "the entry is whole again, its segment kept")
        XCTAssertEqual(try s.cli.run("verify").status, 0)
    }

    func testIngestAfterARestoreStoresAnEntryWhoseRowLostItsBlob() throws {
        let s = try Scratch()
        let a = try ingest(s, seed: 1)
        let bytes = try XCTUnwrap(try fetched(s, a))
        try copyIndex(from: index(s), to: s.path + "/backup.sqlite")
        XCTAssertEqual(try s.cli.run("rm", a).status, 0)
        deleteIndex(s)
        try copyIndex(from: s.path + "/backup.sqlite", to: index(s))
        XCTAssertNil(try fetched(s, a), "the restored row names a blob rm deleted: never served")
        let again = try s.cli.run("ingest", "--json", try s.snapshot("in1.safetensors", seed: 1))
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertFalse(again.stdout.contains("\"already_stored\" : true"), again.stdout)
        XCTAssertEqual(try fetched(s, a), bytes)
    }

    func testDamagedAndSupersededOrphansAreDeletedAndStraysSkipped() throws {
        let s = try Scratch()
        let a = try ingest(s, seed: 1)
        let b = try ingest(s, seed: 2)
        let blobs = blobFiles(s)
        let aBlob = try XCTUnwrap(blobs.first { try! blob($0, belongsTo: a, in: s) })
        let bBlob = try XCTUnwrap(blobs.first { $0 != aBlob })
        // Both rows lost (their blobs become orphans), then a's blob damaged.
        try Database(path: index(s)).query("DELETE FROM entries")  // closed at once: repair runs alone
        let damaged = s.path + "/store/blobs/" + aBlob
        var bytes = try Data(contentsOf: URL(fileURLWithPath: damaged))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: damaged))
        // Things that are not blobs: a FIFO and a directory at blob paths, a pack in the wrong folder.
        try FileManager.default.createDirectory(atPath: s.path + "/store/blobs/ff", withIntermediateDirectories: true)
        XCTAssertEqual(mkfifo(s.path + "/store/blobs/ff/ff00.kvpack", 0o644), 0)
        try FileManager.default.createDirectory(atPath: s.path + "/store/blobs/ff/ff01.kvpack", withIntermediateDirectories: true)
        let bPath = s.path + "/store/blobs/" + bBlob
        let misplaced = s.path + "/store/blobs/ff/" + URL(fileURLWithPath: bPath).lastPathComponent
        try FileManager.default.moveItem(atPath: bPath, toPath: misplaced)

        let repair = try runBounded(s, ["repair"], seconds: 30)
        XCTAssertEqual(repair.status, 3, "a damaged blob is unrecoverable: \(repair.stdout) \(repair.stderr)")
        XCTAssertTrue(repair.stdout.contains("SKIPPED") && repair.stdout.contains("a FIFO"), repair.stdout)
        XCTAssertTrue(repair.stdout.contains("recovered \(b)"), "the misplaced pack is moved home and indexed: \(repair.stdout)")
        XCTAssertTrue(repair.stdout.contains(damaged), "named where it is: \(repair.stdout)")
        let compact = try runBounded(s, ["compact", "--grace-seconds", "0"], seconds: 30)
        XCTAssertEqual(compact.status, 0, compact.stdout + compact.stderr)
        XCTAssertTrue(compact.stdout.contains("DAMAGED"), compact.stdout)
        XCTAssertTrue(compact.stdout.contains("skipped") && compact.stdout.contains("a directory"), compact.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: damaged), "the damaged orphan is deleted")
        XCTAssertNotNil(try fetched(s, b))
        XCTAssertTrue(FileManager.default.fileExists(atPath: s.path + "/store/blobs/ff/ff01.kvpack"), "a directory is never removed")
    }

    func testRepairMovesAnIndexWithDroppedTablesAsideAndRebuilds() throws {
        let s = try Scratch()
        let a = try ingest(s, seed: 1)
        try Database(path: index(s)).execute("DROP TABLE sources; DROP TABLE entries")
        XCTAssertNotEqual(try s.cli.run("ls").status, 0)
        let r = try s.cli.run("repair")
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("damaged index moved to"), r.stdout)
        XCTAssertNotNil(try fetched(s, a))
    }

    func testRepairWaitsForOtherProcessesAndTwoRepairsNeverFailAsDamage() throws {
        let s = try Scratch()
        _ = try ingest(s, seed: 1)
        let inbox = try InboxFixture(s)
        let daemon = try inbox.start(["--jobs", "1"] + fast)
        defer { if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL); daemon.waitUntilExit() } }
        try inbox.drop("d1.safetensors", seed: 11)
        XCTAssertTrue(inbox.wait(timeout: 20) { (try? inbox.storedKeys().contains("key-11")) == true })
        let refused = try s.cli.run(["repair"], environment: ["KVSTORE_BUSY_TIMEOUT_MS": "300"])
        XCTAssertEqual(refused.status, 4, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("stop `kvstore watch`"), refused.stderr)
        kill(daemon.processIdentifier, SIGTERM)
        daemon.waitUntilExit()

        let outputs = [Pipe(), Pipe()]
        let both = try outputs.map { try s.cli.start(["repair"], stdout: $0.fileHandleForWriting, stderr: $0.fileHandleForWriting) }
        for p in both { p.waitUntilExit() }
        XCTAssertEqual(both.map(\.terminationStatus), [0, 0], "two repairs queue on the store lock")
    }

    func testADaemonWhoseIndexIsReplacedReopensAndLosesNothing() throws {
        let s = try Scratch()
        let inbox = try InboxFixture(s)
        let daemon = try inbox.start(["--jobs", "1", "--delete"] + fast)
        defer { if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL); daemon.waitUntilExit() } }
        for seed in 0..<3 { try inbox.drop("a\(seed).safetensors", seed: seed) }
        XCTAssertTrue(inbox.wait(timeout: 30) { inbox.inInbox.isEmpty && (try? inbox.storedKeys().count) == 3 })
        deleteIndex(s)
        for seed in 3..<6 { try inbox.drop("b\(seed).safetensors", seed: seed) }
        XCTAssertTrue(inbox.wait(timeout: 30) { inbox.inInbox.isEmpty && (try? inbox.storedKeys().count) == 3 },
                      "the new entries go into the new index: \(inbox.log())")
        XCTAssertTrue(inbox.log().contains("reopened the store"), inbox.log())
        kill(daemon.processIdentifier, SIGTERM)
        daemon.waitUntilExit()
        let compact = try s.cli.run("compact", "--grace-seconds", "0")
        XCTAssertTrue(compact.stdout.contains("3 adopted"), compact.stdout)
        XCTAssertEqual(try inbox.storedKeys().sorted(), (0..<6).map { "key-\($0)" })
    }

    func testAServerWhoseIndexIsReplacedServesTheNewOne() throws {
        let s = try Scratch()
        let a = try ingest(s, seed: 1)
        try copyIndex(from: index(s), to: s.path + "/backup.sqlite")  // holds a only
        let server = try ServerProcess(s)
        defer { _ = server.stop() }
        XCTAssertEqual(try server.get("/v1/entries/\(a)").status, 200)
        let b = try ingest(s, seed: 2)
        XCTAssertEqual(try server.get("/v1/entries/\(b)").status, 200)
        // A restore from the backup replaces the file the server has open.
        deleteIndex(s)
        try copyIndex(from: s.path + "/backup.sqlite", to: index(s))
        XCTAssertEqual(try server.get("/v1/entries/\(b)").status, 404, "the server reads the restored index, not the old file")
        XCTAssertEqual(try server.get("/v1/entries/\(a)").status, 200)
        XCTAssertEqual(try s.cli.run("compact", "--grace-seconds", "0").status, 0)
        XCTAssertEqual(try server.get("/v1/entries/\(b)").status, 200, "b's blob, an orphan in the restored index, is adopted")
    }

    /// Over seeded random interleavings of ingest, rm, index backup / restore / deletion,
    /// repair and compaction, some killed (SIGKILL) at a random moment: every entry ingested
    /// and not removed fetches bit-identically after the next compaction, and no removed
    /// entry is ever fetched.
    func testNoInterleavingLosesAnEntryOrBringsOneBack() throws {
        for seed in [7, 11] {
            try interleaving(seed: UInt64(seed), steps: 36)
        }
    }

    private func interleaving(seed: UInt64, steps: Int) throws {
        let s = try Scratch()
        var rng = SynthRandom(seed: seed)  // seeded: a failing interleaving replays
        var live: [Int: Data] = [:]  // snapshot seed → bytes fetched right after it was stored
        var removed: Set<Int> = []
        var unknown: Set<Int> = []  // an ingest or rm was killed: either outcome is allowed
        var ids: [Int: String] = [:]
        var backup = false
        var log: [String] = []
        func check() throws {
            let r = try s.cli.run("compact", "--grace-seconds", "0", "--verify-sample", "0")
            XCTAssertEqual(r.status, 0, "seed \(seed): \(log) \(r.stdout) \(r.stderr)")
            for (k, bytes) in live where !unknown.contains(k) {
                XCTAssertEqual(try fetched(s, ids[k]!), bytes, "seed \(seed): entry \(k) lost after \(log)")
            }
            for k in removed where !unknown.contains(k) {
                XCTAssertNil(try fetched(s, ids[k]!), "seed \(seed): removed entry \(k) came back after \(log)")
            }
        }
        for step in 0..<steps {
            let k = Int(rng.next() % 6)
            let killAfter: useconds_t? = rng.next() % 4 == 0 ? useconds_t(rng.next() % 120_000) : nil
            switch rng.next() % 9 {
            case 0, 1, 2:
                // One policy per snapshot: packing is deterministic, so every blob an entry
                // ever had is the same bytes, and "bit-identical" is exact.
                let policy = k % 2 == 0 ? "none" : "lightkv+int8"
                let file = try s.snapshot("k\(k).safetensors", seed: k + 1)
                log.append("ingest \(k)\(killAfter == nil ? "" : " killed")")
                if let killAfter {
                    try killed(s, ["ingest", "--policy", policy, file], after: killAfter)
                    unknown.insert(k)
                    continue
                }
                let r = try s.cli.run("ingest", "--policy", policy, file)
                XCTAssertEqual(r.status, 0, "seed \(seed) step \(step): \(r.stderr)")
                ids[k] = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                let now = try fetched(s, ids[k]!)
                XCTAssertNotNil(now, "seed \(seed): just stored, \(k) fetches")
                if let before = live[k], !unknown.contains(k) { XCTAssertEqual(now, before, "seed \(seed): \(k) changed") }
                live[k] = now
                removed.remove(k); unknown.remove(k)
            case 3:
                guard live[k] != nil, !unknown.contains(k), let id = ids[k] else { continue }
                log.append("rm \(k)\(killAfter == nil ? "" : " killed")")
                if let killAfter {
                    try killed(s, ["rm", id], after: killAfter)
                    unknown.insert(k)
                } else {
                    // After the index was deleted or restored, its row may be missing: then
                    // rm says so (exit 2) and the entry stays, to be adopted.
                    let r = try s.cli.run("rm", id)
                    XCTAssertTrue(r.status == 0 || r.status == 2, "seed \(seed): \(r.stderr)")
                    if r.status == 2 { continue }
                }
                live[k] = nil; removed.insert(k)
            case 4:
                log.append("backup")
                try copyIndex(from: index(s), to: s.path + "/backup.sqlite")
                backup = true
            case 5:
                guard backup else { continue }
                log.append("restore")
                deleteIndex(s)
                try copyIndex(from: s.path + "/backup.sqlite", to: index(s))
            case 6:
                log.append("delete index")
                deleteIndex(s)
            case 7:
                log.append("repair\(killAfter == nil ? "" : " killed")")
                if let killAfter { try killed(s, ["repair"], after: killAfter) } else { try s.cli.run("repair") }
            default:
                log.append("compact\(killAfter == nil ? "" : " killed")")
                if let killAfter {
                    try killed(s, ["compact", "--grace-seconds", "0"], after: killAfter)
                } else {
                    try check()
                }
            }
        }
        try check()
    }

    /// Starts `kvstore ARGS` and kills it (SIGKILL) after `after` microseconds if still running.
    private func killed(_ s: Scratch, _ args: [String], after: useconds_t) throws {
        let null = FileHandle(forWritingAtPath: "/dev/null")
        let p = try s.cli.start(args, stdout: null, stderr: null)
        usleep(after)
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    /// Runs `kvstore ARGS`, failing the test (not hanging it) past `seconds`.
    private func runBounded(_ s: Scratch, _ args: [String], seconds: Double) throws -> CLI.Result {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: CLI.Result?
        nonisolated(unsafe) var failure: Error?
        DispatchQueue.global().async {
            do { result = try s.cli.run(args) } catch { failure = error }
            done.signal()
        }
        guard done.wait(timeout: .now() + seconds) == .success else {
            XCTFail("\(args) did not finish in \(seconds) s")
            throw CocoaError(.executableLoad)
        }
        if let failure { throw failure }
        return result!
    }

    /// True when blob file `relative` (under blobs/) is the one entry `id`'s row names.
    private func blob(_ relative: String, belongsTo id: String, in s: Scratch) throws -> Bool {
        let show = try s.cli.run("show", id, "--json")
        return show.stdout.contains(String(URL(fileURLWithPath: relative).lastPathComponent.dropLast(7)))
    }

    private func tombstone(_ s: Scratch, blob: String, at time: Double) throws {
        try Database(path: index(s)).query("INSERT OR REPLACE INTO doomed (blob, doomed_at) VALUES (?, ?)", [.text(blob), .double(time)])
    }

    private func setModified(_ path: String, _ time: Double) throws {
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: time)], ofItemAtPath: path)
    }
}
