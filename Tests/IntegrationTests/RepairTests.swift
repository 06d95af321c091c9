import Foundation
import XCTest

/// A lost, emptied or damaged index never costs the blobs, and `kvstore repair` rebuilds it
/// from the blobs' own headers.
final class RepairTests: XCTestCase {
    /// Three entries with different policies; their ids and what `fetch` returns for each.
    private func populatedStore(_ s: Scratch) throws -> [String: Data] {
        var fetched: [String: Data] = [:]
        for (seed, policy) in [(1, "none"), (2, "lightkv+int8"), (3, "lightkv+int4g128m0t0")] {
            let r = try s.cli.run("ingest", "--policy", policy, try s.snapshot("in\(seed).safetensors", seed: seed))
            XCTAssertEqual(r.status, 0, r.stderr)
            let id = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            fetched[id] = try s.cli.run("fetch", id, "-o", "-").stdoutBytes
        }
        return fetched
    }

    private func blobFiles(_ s: Scratch) -> [String] {
        let root = s.path + "/store/blobs"
        return ((try? FileManager.default.subpathsOfDirectory(atPath: root)) ?? []).filter { $0.hasSuffix(".kvpack") }.sorted()
    }

    private func removeIndex(_ s: Scratch) throws {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: s.path + "/store/index.sqlite" + suffix) }
    }

    func testRepairRebuildsEveryRowFromTheBlobs() throws {
        let s = try Scratch()
        let fetched = try populatedStore(s)
        let before = try s.cli.run("ls", "--json").stdoutBytes
        try removeIndex(s)
        XCTAssertEqual(try s.cli.run("ls", "--json").stdout.filter { $0 == "{" }.count, 0, "the new index is empty")
        let r = try s.cli.run("repair")
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("3 recovered"), r.stdout)
        for (id, bytes) in fetched {
            XCTAssertEqual(try s.cli.run("fetch", id, "-o", "-").stdoutBytes, bytes, "\(id) fetches as before")
        }
        // Rows as they were, less access statistics.
        let rows = { (data: Data) throws -> [[String: String]] in
            let all = try JSONSerialization.jsonObject(with: data) as! [[String: Any]]
            let kept: Set = ["id", "model", "spans", "policy", "compression", "blob", "bytes_in", "bytes_out", "entries_kept",
                             "fidelity", "created_at", "key"]
            // Nested objects (spans, compression, fidelity) compared as sorted JSON text.
            let text = { (value: Any) -> String in
                guard JSONSerialization.isValidJSONObject(value),
                      let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys]) else { return "\(value)" }
                return String(decoding: data, as: UTF8.self)
            }
            return all.map { row in Dictionary(uniqueKeysWithValues: row.filter { kept.contains($0.key) }.map { ($0.key, text($0.value)) }) }
                .sorted { $0["id", default: ""] < $1["id", default: ""] }
        }
        let rebuilt = try rows(try s.cli.run("ls", "--json").stdoutBytes)
        XCTAssertEqual(rebuilt.map { $0["blob"] != nil && $0["compression"] != nil }, [true, true, true], "the compared fields are there")
        XCTAssertEqual(rebuilt, try rows(before))
        XCTAssertEqual(try s.cli.run("ls", "--source", "sha256:" + String(repeating: "ef", count: 32)).stdout
            .split(separator: "\n").count, 4, "sources are indexed again (header + 3 rows)")
        let compact = try s.cli.run("compact", "--grace-seconds", "0")
        XCTAssertEqual(compact.status, 0, compact.stderr)
        XCTAssertEqual(blobFiles(s).count, 3, "nothing is an orphan after repair")
        XCTAssertEqual(try s.cli.run("repair").stdout.contains("3 already indexed"), true, "repair is idempotent")
    }

    func testRepairMovesADamagedIndexAsideAndRebuilds() throws {
        let s = try Scratch()
        let fetched = try populatedStore(s)
        try removeIndex(s)
        try Data(repeating: 0x5A, count: 8192).write(to: URL(fileURLWithPath: s.path + "/store/index.sqlite"))
        XCTAssertEqual(try s.cli.run("ls").status, 3, "a damaged index is reported as such")
        let r = try s.cli.run("repair")
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("damaged index moved to"), r.stdout)
        let aside = try FileManager.default.contentsOfDirectory(atPath: s.path + "/store").filter { $0.hasPrefix("index.sqlite.damaged-") }
        XCTAssertEqual(aside.count, 1, "the damaged file is kept for inspection")
        for (id, bytes) in fetched { XCTAssertEqual(try s.cli.run("fetch", id, "-o", "-").stdoutBytes, bytes) }
    }

    func testRepairNeverIndexesADamagedBlob() throws {
        let s = try Scratch()
        let fetched = try populatedStore(s)
        try removeIndex(s)
        let damaged = s.path + "/store/blobs/" + blobFiles(s)[0]
        var bytes = try Data(contentsOf: URL(fileURLWithPath: damaged))
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: damaged))
        let r = try s.cli.run("repair")
        XCTAssertEqual(r.status, 3, "an unrecoverable blob is reported: \(r.stdout)")
        XCTAssertTrue(r.stdout.contains("2 recovered") && r.stdout.contains("1 unrecoverable"), r.stdout)
        var served = 0
        for (id, data) in fetched {
            let f = try s.cli.run("fetch", id, "-o", "-")
            if f.status == 0 { XCTAssertEqual(f.stdoutBytes, data); served += 1 } else { XCTAssertEqual(f.status, 2, "the damaged one is simply absent") }
        }
        XCTAssertEqual(served, 2)
    }
}
