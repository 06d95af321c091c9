import Foundation
import LightKV
import Store
import XCTest

/// The shareable prefix (KVSNAP.md): `input_ids` stored and fetched back, and `fetch --prefix`
/// writing the positions before the first prompt span alone.
final class PrefixFetchTests: XCTestCase {
    private func read(_ data: Data) throws -> (Snapshot, Data) {
        let snap = try data.withUnsafeBytes { try Snapshot(bytes: $0) }
        return (snap, data)
    }

    func testInputIDsAreStoredAndFetchedBackInTheirDtype() throws {
        let s = try Scratch()
        let input = try s.question("a.safetensors", question: 1)
        for policy in ["none", "lightkv+int8"] {
            let id = try s.cli.run("ingest", "--policy", policy, input).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let out = try s.cli.run("fetch", id, "-o", "-")
            XCTAssertEqual(out.status, 0, out.stderr)
            try out.stdoutBytes.withUnsafeBytes { b in
                let snap = try Snapshot(bytes: b)
                XCTAssertEqual(snap.inputIDs?.dtype, .i64, policy)
                let expected: [Int64] = (0..<26).map { (t: Int) -> Int64 in t < 20 ? Int64(1000 + t) : Int64(5010 + t) }
                XCTAssertEqual(snap.tokenIDs(), expected, policy)
            }
        }
    }

    func testTheSameSnapshotWithAndWithoutIdsAreTwoEntries() throws {
        let s = try Scratch()
        let a = try s.cli.run("ingest", try s.question("a.safetensors", question: 1)).stdout
        let b = try s.cli.run("ingest", try s.question("b.safetensors", question: 1, ids: false)).stdout
        XCTAssertNotEqual(a, b, "the ids are part of what was cached")
    }

    func testAPrefixFetchHoldsThePositionsBeforeThePromptAndIsTheSameForEveryQuestion() throws {
        let s = try Scratch()
        var prefixes: [Data] = []
        for (question, prompt) in [(1, 6), (2, 9)] {
            let input = try s.question("q\(question).safetensors", question: question, prompt: prompt)
            let id = try s.cli.run("ingest", "--policy", "none", input).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let r = try s.cli.run("fetch", id, "--prefix", "-o", "-")
            XCTAssertEqual(r.status, 0, r.stderr)
            try r.stdoutBytes.withUnsafeBytes { b in
                let snap = try Snapshot(bytes: b)
                XCTAssertEqual(snap.seqLen, 20)
                XCTAssertEqual(snap.layers.map(\.count), [20, 20])
                XCTAssertEqual(snap.metadata.spans.count, 2, "the system text and the image; the prompt is left out")
                XCTAssertNil(snap.metadata.key, "the producer's key names the whole request")
                XCTAssertNil(snap.metadata.nextPosition)
                XCTAssertEqual(snap.metadata.raw[SnapshotMetadata.prefixOfKey], id)
                let expected: [Int64] = (0..<20).map { (t: Int) -> Int64 in Int64(1000 + t) }
                XCTAssertEqual(snap.tokenIDs(), expected)
                XCTAssertEqual(snap.positions(layer: 1), (0..<20).map(Int32.init))
            }
            // The prefix's tensors equal the first 20 positions of the whole fetch.
            let whole = try s.cli.run("fetch", id, "-o", "-").stdoutBytes
            try whole.withUnsafeBytes { w in
                try r.stdoutBytes.withUnsafeBytes { p in
                    let full = try Snapshot(bytes: w), prefix = try Snapshot(bytes: p)
                    for i in 0..<2 {
                        let fk = try full.floatLayer(i).keys, pk = try prefix.floatLayer(i).keys
                        let n = 20 + prompt
                        for h in 0..<2 { XCTAssertEqual(Array(pk[(h * 20 * 16)..<((h + 1) * 20 * 16)]), Array(fk[(h * n * 16)..<(h * n * 16 + 20 * 16)])) }
                    }
                }
            }
            let file = s.path + "/prefix\(question).safetensors"
            XCTAssertEqual(try s.cli.run("fetch", id, "--prefix", "-o", file).status, 0, "to a file (positional writes) too")
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: file)), r.stdoutBytes)
            prefixes.append(r.stdoutBytes)
        }
        XCTAssertEqual(prefixes[0].count, prefixes[1].count)
    }

    func testAPrefixFetchOfAMergedEntryKeepsWholeGroupsAndExpands() throws {
        let s = try Scratch()
        let id = try s.cli.run("ingest", "--policy", "lightkv", try s.question("a.safetensors", question: 1, dtype: .f32))
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        for args in [["--prefix"], ["--prefix", "--expand"]] {
            let r = try s.cli.run(["fetch", id, "-o", "-"] + args)
            XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)")
            try r.stdoutBytes.withUnsafeBytes { b in
                let snap = try Snapshot(bytes: b)
                for i in 0..<2 {
                    XCTAssertTrue(snap.positions(layer: i).allSatisfy { $0 < 20 }, "\(args)")
                    let covered = snap.sizes(layer: i).reduce(0) { $0 + Int($1) }
                    XCTAssertEqual(covered, 20, "\(args): the kept entries stand for every prefix token")
                }
            }
        }
        XCTAssertEqual(try s.cli.run("fetch", id, "--prefix", "--raw", "-o", "-").status, 1, "--raw writes the pack as stored")
    }

    func testMatchFindsTheLongestStoredPrefixOfARequest() throws {
        let s = try Scratch()
        let id = try s.cli.run("ingest", try s.question("q1.safetensors", question: 1)).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        _ = try s.cli.run("ingest", try s.question("noids.safetensors", question: 3, seed: 5, ids: false))
        // A new question about the same image: the same 20 prefix ids, then others.
        let request: [Int64] = (0..<31).map { (t: Int) -> Int64 in t < 20 ? Int64(1000 + t) : Int64(9000 + t) }
        let ids = s.path + "/ids.json"
        try JSONEncoder().encode(request).write(to: URL(fileURLWithPath: ids))
        let image = "sha256:" + String(repeating: "ab", count: 32), other = "sha256:" + String(repeating: "cd", count: 32)

        // Token ids do not tell images apart (placeholders are the same for every image): a
        // prefix holding an image matches only a request that names it.
        XCTAssertEqual(try s.cli.run("match", "--model", "test/model", "--ids", ids).status, 2, "ids alone name no image")
        let withSource = try s.cli.run("match", "--model", "test/model", "--ids", ids, "--source", image, "--json")
        XCTAssertEqual(withSource.status, 0, withSource.stderr)
        let found = try JSONSerialization.jsonObject(with: withSource.stdoutBytes) as! [String: Any]
        XCTAssertEqual(found["id"] as? String, id)
        XCTAssertEqual(found["length"] as? Int, 20)
        XCTAssertEqual(found["sources_checked"] as? Int, 1)
        XCTAssertTrue(try s.cli.run("match", "--model", "test/model", "--ids", ids, "--source", image).stdout
            .contains("input_ids and 1 media source"))
        XCTAssertEqual(try s.cli.run("match", "--model", "test/model", "--ids", ids, "--source", other).status, 2,
                       "the same ids with another image are not the same prefix")
        XCTAssertEqual(try s.cli.run("match", "--model", "other/model", "--ids", ids, "--source", image).status, 2)
        var shorter = request; shorter[7] = 1
        try JSONEncoder().encode(shorter).write(to: URL(fileURLWithPath: ids))
        XCTAssertEqual(try s.cli.run("match", "--model", "test/model", "--ids", ids, "--source", image).status, 2, "one id differs inside the prefix")
        try Data("[1, 2.5]".utf8).write(to: URL(fileURLWithPath: ids))
        let bad = try s.cli.run("match", "--model", "test/model", "--ids", ids)
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("not a JSON array of integer token ids"), bad.stderr)

        // Rows rebuilt from the blobs alone match too.
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: s.path + "/store/index.sqlite" + suffix) }
        XCTAssertEqual(try s.cli.run("repair").status, 0)
        try JSONEncoder().encode(request).write(to: URL(fileURLWithPath: ids))
        XCTAssertTrue(try s.cli.run("match", "--model", "test/model", "--ids", ids, "--source", image).stdout.hasPrefix(id))
    }

    /// Token ids do not tell images apart (a processor's placeholders are the same for every
    /// image): a stored image without a source matches no request, and a prefix of two images
    /// matches only a request that names both.
    func testMatchNeedsEveryImageOfThePrefixNamedAlike() throws {
        let s = try Scratch()
        let image = "sha256:" + String(repeating: "ab", count: 32)
        XCTAssertEqual(try s.cli.run("ingest", try s.question("q1.safetensors", question: 1, source: nil)).status, 0)
        let ids = s.path + "/ids.json"
        try JSONEncoder().encode((0..<31).map { (t: Int) -> Int64 in t < 20 ? Int64(1000 + t) : Int64(9000 + t) })
            .write(to: URL(fileURLWithPath: ids))
        for sources in [[], [image], ["sha256:" + String(repeating: "cd", count: 32)]] {
            let r = try s.cli.run(["match", "--model", "test/model", "--ids", ids] + sources.flatMap { ["--source", $0] })
            XCTAssertEqual(r.status, 2, "an image stored without its source is nobody's: \(sources) \(r.stdout)")
        }

        let file = s.path + "/two.safetensors"
        XCTAssertEqual(try s.cli.run("synth", "--preset", "tiny", "--images", "2", "--seed", "3", "-o", file).status, 0)
        XCTAssertEqual(try s.cli.run("ingest", file).status, 0)
        let (request, both) = try Data(contentsOf: URL(fileURLWithPath: file)).withUnsafeBytes { b in
            let snap = try Snapshot(bytes: b)
            return (snap.tokenIDs()!, snap.metadata.spans.compactMap(\.source))
        }
        XCTAssertEqual(both.count, 2)
        try JSONEncoder().encode(request).write(to: URL(fileURLWithPath: ids))
        let first = try s.cli.run(["match", "--model", "synth/tiny", "--ids", ids, "--source", both[0]])
        XCTAssertEqual(first.status, 2, "the second image is not named: \(first.stdout)")
        let named = try s.cli.run(["match", "--model", "synth/tiny", "--ids", ids, "--json"] + both.flatMap { ["--source", $0] })
        XCTAssertEqual(named.status, 0, named.stderr)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: named.stdoutBytes) as! [String: Any])["sources_checked"] as? Int, 2)
    }

    func testSynthQuestionsShareOnePrefixThatFetchAndMatchFind() throws {
        let s = try Scratch()
        let r = try s.cli.run("synth", "--preset", "tiny", "--questions", "3", "-o", s.path + "/qs")
        XCTAssertEqual(r.status, 0, r.stderr)
        let files = try FileManager.default.contentsOfDirectory(atPath: s.path + "/qs").sorted().map { s.path + "/qs/" + $0 }
        XCTAssertEqual(files.count, 3)
        var prefixes: Set<[[UInt8]]> = [], ids: [String] = []
        for file in files {
            let id = try s.cli.run("ingest", "--policy", "none", file).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            ids.append(id)
            // Every tensor of the prefix (the metadata names the entry and the synthetic request).
            let prefix = try s.cli.run("fetch", id, "--prefix", "-o", "-").stdoutBytes
            prefixes.insert(try prefix.withUnsafeBytes { b in
                let snap = try Snapshot(bytes: b)
                return snap.layers.flatMap { [$0.key, $0.value, $0.positions!, $0.sizes!] }.map { Array(snap.data($0)) }
                    + [Array(snap.data(snap.inputIDs!))]
            })
        }
        XCTAssertEqual(Set(ids).count, 3, "three questions, three entries")
        XCTAssertEqual(prefixes.count, 1, "one prefix, bit for bit")
        // A fourth question's ids find one of them.
        let (request, sources) = try Data(contentsOf: URL(fileURLWithPath: files[0])).withUnsafeBytes { b in
            let snap = try Snapshot(bytes: b)
            return (snap.tokenIDs()!, snap.metadata.spans.compactMap(\.source))
        }
        let path = s.path + "/ids.json"
        try JSONEncoder().encode(Array(request.prefix(68)) + [7, 8, 9]).write(to: URL(fileURLWithPath: path))
        let match = try s.cli.run(["match", "--model", "synth/tiny", "--ids", path] + sources.flatMap { ["--source", $0] })
        XCTAssertEqual(match.status, 0, match.stderr + match.stdout)
        XCTAssertTrue(ids.contains(String(match.stdout.prefix(64))), match.stdout)
    }

    /// Two entries hold one prefix in two segments (two policies); the more recently fetched
    /// one's segment is damaged. Once a read has found it so (a fetch, or `verify`), `match`
    /// names the intact one instead of the damaged one again and again; once the segment reads
    /// back whole again (restored, then verified), it is matched again.
    func testMatchPassesOverAnEntryWhoseSegmentAReadFoundDamaged() throws {
        let s = try Scratch()
        XCTAssertEqual(try s.cli.run("synth", "--preset", "tiny", "--questions", "2", "-o", s.path + "/qs").status, 0)
        let files = try FileManager.default.contentsOfDirectory(atPath: s.path + "/qs").sorted().map { s.path + "/qs/" + $0 }
        func ingest(_ file: String, _ policy: String) throws -> String {
            try s.cli.run("ingest", "--policy", policy, file).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let (a, b) = (try ingest(files[0], "int8"), try ingest(files[1], "none"))
        func show(_ id: String) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(s.cli.run("show", "--json", id).stdout.utf8)) as! [String: Any]
        }
        func segmentOf(_ id: String) throws -> String? { (try show(id)["segment"] as? [String: Any])?["blob"] as? String }
        let segment = try XCTUnwrap(segmentOf(a))
        XCTAssertNotEqual(segment, try segmentOf(b), "two segments of one prefix")
        // Beside the entry's part, in the segment's own fan-out folder.
        let blobs = (((try XCTUnwrap(show(a)["blob_path"] as? String)) as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
        let segmentPath = "\(blobs)/\(segment.prefix(2))/\(segment).kvpack"
        XCTAssertEqual(try s.cli.run("fetch", a, "-o", s.path + "/a.safetensors").status, 0)  // the most recently fetched

        let (request, sources) = try Data(contentsOf: URL(fileURLWithPath: files[0])).withUnsafeBytes { b in
            let snap = try Snapshot(bytes: b)
            return (snap.tokenIDs()!, snap.metadata.spans.compactMap(\.source))
        }
        let path = s.path + "/ids.json"
        try JSONEncoder().encode(Array(request.prefix(68)) + [7, 8, 9]).write(to: URL(fileURLWithPath: path))
        func match() throws -> String {
            let r = try s.cli.run(["match", "--model", "synth/tiny", "--ids", path] + sources.flatMap { ["--source", $0] })
            XCTAssertEqual(r.status, 0, r.stderr)
            return String(r.stdout.prefix(64))
        }
        XCTAssertEqual(try match(), a)

        let original = try Data(contentsOf: URL(fileURLWithPath: segmentPath))
        var damaged = original
        damaged[damaged.count / 2] ^= 0x40
        try damaged.write(to: URL(fileURLWithPath: segmentPath))
        XCTAssertEqual(try match(), a, "nothing has read it yet")
        XCTAssertEqual(try s.cli.run("fetch", a, "--prefix", "-o", s.path + "/p.safetensors").status, 3)
        XCTAssertEqual(try match(), b, "the damaged prefix does not hide the intact one")
        XCTAssertEqual(try s.cli.run("fetch", b, "--prefix", "-o", s.path + "/p.safetensors").status, 0)

        try original.write(to: URL(fileURLWithPath: segmentPath))
        XCTAssertEqual(try match(), b, "recorded until a read finds it whole")
        XCTAssertEqual(try s.cli.run("verify").status, 0)
        XCTAssertEqual(try s.cli.run("fetch", a, "-o", s.path + "/a.safetensors").status, 0)
        XCTAssertEqual(try match(), a)

        try damaged.write(to: URL(fileURLWithPath: segmentPath))
        XCTAssertEqual(try s.cli.run("verify").status, 3, "verify records what it finds too")
        XCTAssertEqual(try match(), b)
        // Stored again (the same snapshot under the same policy re-publishes its segment):
        // whole again, and matched again.
        XCTAssertEqual(try s.cli.run("ingest", "--policy", "int8", files[0]).status, 0)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: segmentPath)), original)
        XCTAssertEqual(try s.cli.run("fetch", a, "-o", s.path + "/a.safetensors").status, 0)
        XCTAssertEqual(try match(), a)
    }

    func testEvalCrossMeasuresTheSameAndANewQuestion() throws {
        let s = try Scratch()
        XCTAssertEqual(try s.cli.run("synth", "--preset", "tiny", "--questions", "3", "-o", s.path + "/qs").status, 0)
        let files = try FileManager.default.contentsOfDirectory(atPath: s.path + "/qs").sorted().map { s.path + "/qs/" + $0 }
        let r = try s.cli.run(["eval", "--cross", "--json", "--policy", "none", "--policy", "tome55", "--policy", "aircache35"] + files)
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = try JSONSerialization.jsonObject(with: r.stdoutBytes) as! [[String: Any]]
        func error(_ row: [String: Any], _ which: String) -> Double { (row[which] as! [String: Any])["relative_error"] as! Double }
        XCTAssertEqual(error(rows[0], "same"), 0, accuracy: 1e-6, "none loses nothing")
        XCTAssertEqual(error(rows[0], "new"), 0, accuracy: 1e-6)
        XCTAssertEqual(error(rows[1], "same"), error(rows[1], "new"), accuracy: 0.02, "no guidance: no question is favoured")
        XCTAssertGreaterThan(error(rows[2], "new"), error(rows[2], "same"), "guided by one question, worse for the others")

        let one = try s.cli.run("eval", "--cross", "--policy", "none", files[0])
        XCTAssertEqual(one.status, 1)
        XCTAssertTrue(one.stderr.contains("at least 2 snapshots"), one.stderr)
        XCTAssertEqual(try s.cli.run("synth", "--preset", "tiny", "--seed", "9", "-o", s.path + "/other.safetensors").status, 0)
        let unrelated = try s.cli.run("eval", "--cross", "--policy", "none", files[0], s.path + "/other.safetensors")
        XCTAssertEqual(unrelated.status, 3)
        XCTAssertTrue(unrelated.stderr.contains("other.safetensors does not share the first one's prefix"), unrelated.stderr)
    }

    func testAnIndexWrittenBeforePrefixesMigratesAndFetchesBitIdentically() throws {
        let s = try Scratch()
        let id = try s.cli.run("ingest", "--policy", "lightkv+int8", try s.question("a.safetensors", question: 1))
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let before = try s.cli.run("fetch", id, "-o", "-").stdoutBytes
        // The schema as the previous release left it: no prefix columns, no migration 0004.
        try Database(path: s.path + "/store/index.sqlite").execute("""
            DROP INDEX entries_prefix; ALTER TABLE entries DROP COLUMN prefix_length;
            ALTER TABLE entries DROP COLUMN prefix_digest; DELETE FROM migrations WHERE name = '0004_prefixes'
            """)
        XCTAssertEqual(try s.cli.run("fetch", id, "-o", "-").stdoutBytes, before, "migrated on open, fetched as before")
        XCTAssertEqual(try s.cli.run("verify").status, 0)
        XCTAssertEqual(try s.cli.run("fetch", id, "--prefix", "-o", "-").status, 0)
        let copy = s.path + "/copy"
        XCTAssertEqual(try s.cli.run("migrate", "--from", s.path + "/store", "--to", copy).status, 0)
        XCTAssertEqual(try s.cli.run("fetch", "--store", copy, id, "-o", "-").stdoutBytes, before)
    }
}
