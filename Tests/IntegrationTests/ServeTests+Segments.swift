import Foundation
import Store
import XCTest

/// `kvstore serve` reading a segmented entry (docs/design/segments.md) while the store
/// changes under it, and the query parameters of the data routes.
extension ServeTests {
    /// A question stored `int8` (segmented) and the row that names its segment.
    func segmented(_ s: Scratch, question: Int = 1, seed: Int = 0) throws -> (id: String, row: EntryRecord) {
        let r = try s.cli.run("ingest", "--policy", "int8", try s.question("q\(question)-\(seed).safetensors", question: question, seed: seed))
        XCTAssertEqual(r.status, 0, r.stderr)
        let id = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let row = try XCTUnwrap(try EntryIndex(path: s.path + "/store/index.sqlite").entry(id: id))
        XCTAssertNotNil(row.segment, "stored segmented")
        return (id, row)
    }

    /// A client reads the part, then the segment it names under `If-Match`: a re-pack in
    /// between (the entry now stored whole) is 412, "start again", not 404 "stored whole",
    /// on both routes; without `If-Match` a whole entry's segment stays 404. A layout asked
    /// under another segment's tag is 412 with the current one.
    func testASegmentAskedUnderIfMatchAfterARepackIs412NotStoredWhole() throws {
        let s = try Scratch()
        let (a, rowA) = try segmented(s)
        let (b, rowB) = try segmented(s, question: 1, seed: 5)
        let server = try ServerProcess(s)
        let old = "\"\(rowA.segment!)\""
        let first = try server.get("/v1/entries/\(a)/layout?segment=1", headers: ["If-Match": old])
        XCTAssertEqual(first.status, 200, first.text)
        XCTAssertEqual(first.header("etag"), old)
        XCTAssertEqual(try s.cli.run("repack", "--policy", "none", a).status, 0)
        for target in ["/v1/entries/\(a)/layout?segment=1", "/v1/entries/\(a)/pack?segment=1"] {
            let r = try server.get(target, headers: ["If-Match": old, "Range": "bytes=0-63"])
            XCTAssertEqual(r.status, 412, "\(target): \(r.text)")
            XCTAssertEqual(r.json["code"] as? String, "precondition_failed", target)
            XCTAssertNil(r.header("etag"), "no segment now: no tag to name")
            XCTAssertEqual(try server.get(target).status, 404, "no If-Match: a whole entry has no segment")
        }
        let stale = try server.get("/v1/entries/\(b)/layout?segment=1", headers: ["If-Match": old])
        XCTAssertEqual(stale.status, 412, stale.text)
        XCTAssertEqual(stale.header("etag"), "\"\(rowB.segment!)\"", "the current segment")
        XCTAssertEqual(try server.get("/v1/entries/\(b)/layout", headers: ["If-Match": "\"\(rowB.blob)\""]).status, 200)
        XCTAssertEqual(try server.get("/v1/entries/\(b)/layout", headers: ["If-Match": old]).status, 412, "the part's layout too")
    }

    /// The server has opened the part when a re-pack lands and compaction collects the
    /// segment the part names: the segment's absence is the row's change, 412, not damage.
    func testASegmentCollectedAfterARepackWhileItsPartIsOpenIs412NotCorrupt() throws {
        let s = try Scratch()
        let (a, row) = try segmented(s)
        let store = try StoreRoot(path: s.path + "/store")
        let part = store.blobs.location(row.blob)
        let cli = "KVSTORE_HOME=\(s.path)/store \(CLI.binary)"
        let hook = OpenHook(name: (part as NSString).lastPathComponent, at: 1,
                            run: "\(cli) repack --policy none \(a) && \(cli) compact --grace-seconds 0")
        let server = try ServerProcess(s, environment: try hook.environment(s, target: part))
        let r = try server.get("/v1/entries/\(a)/pack?segment=1", headers: ["If-Match": "\"\(row.segment!)\""])
        XCTAssertNil(try store.blobs.attributes(row.segment!), "the hook collected the segment")
        XCTAssertEqual(r.status, 412, r.text)
        XCTAssertEqual(r.json["code"] as? String, "precondition_failed")
        XCTAssertFalse(server.stderr.contains("corrupt"), server.stderr)
    }

    /// A fleet node's `verify` drops a cached copy and downloads it again (the same bytes, a
    /// new inode) between the reader's open of the pack and the route's: served, not "damaged".
    func testAPackReplacedByAnIdenticalCopyWhileOpenedIsServed() throws {
        let s = try Scratch()
        let (a, row) = try segmented(s)
        let store = try StoreRoot(path: s.path + "/store")
        for (target, blob) in [("/v1/entries/\(a)/pack", row.blob), ("/v1/entries/\(a)/pack?segment=1", row.segment!)] {
            let path = store.blobs.location(blob), copy = s.path + "/copy.kvpack"
            try FileManager.default.copyItem(atPath: path, toPath: copy)
            let hook = OpenHook(name: (path as NSString).lastPathComponent, at: 2, rename: copy)
            let server = try ServerProcess(s, environment: try hook.environment(s, target: path))
            let r = try server.get(target)
            XCTAssertFalse(FileManager.default.fileExists(atPath: copy), "the hook replaced the file")
            XCTAssertEqual(r.status, 200, "\(target): \(r.text)")
            XCTAssertEqual(r.body, try Data(contentsOf: URL(fileURLWithPath: path)), target)
            XCTAssertEqual(server.stop(), 0)
        }
    }

    /// A damaged segment breaks every entry naming it: the answer names the segment, on every
    /// route that reads it.
    func testADamagedSegmentIsNamedInTheAnswer() throws {
        let s = try Scratch()
        let (a, row) = try segmented(s)
        let path = try StoreRoot(path: s.path + "/store").blobs.readablePath(row.segment!)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count / 2] ^= 0x40
        try FileManager.default.removeItem(atPath: path)
        try bytes.write(to: URL(fileURLWithPath: path))
        let server = try ServerProcess(s)
        for target in ["/v1/entries/\(a)/kvsnap", "/v1/entries/\(a)/pack?segment=1", "/v1/entries/\(a)/layout?segment=1"] {
            let r = try server.get(target)
            XCTAssertEqual(r.status, 500, target)
            XCTAssertEqual(r.json["code"] as? String, "corrupt", target)
            let message = r.json["error"] as? String ?? ""
            XCTAssertTrue(message.contains("shared prefix segment \(row.segment!)") && message.contains(a), "\(target): \(message)")
        }
        XCTAssertEqual(try server.get("/v1/entries/\(a)/pack").status, 200, "the part itself is intact")
    }

    /// A typo'd or repeated parameter is refused, naming it, rather than quietly serving
    /// something else; `true` and `false` are the documented spellings of 1 and 0.
    func testUnknownAndRepeatedParametersOfTheDataRoutesAre400() throws {
        let s = try Scratch()
        let (a, _) = try segmented(s)
        let server = try ServerProcess(s)
        for (query, name) in [("kvsnap?segment=1", "segment"), ("kvsnap?prefix=1&prefix=0", "prefix"),
                              ("layout?segment=0&segment=1", "segment"), ("pack?segmnet=1", "segmnet"), ("layout?dtype=f32", "dtype")] {
            let r = try server.get("/v1/entries/\(a)/\(query)")
            XCTAssertEqual(r.status, 400, "\(query): \(r.text)")
            XCTAssertEqual(r.json["code"] as? String, "bad_request", query)
            XCTAssertTrue((r.json["error"] as? String ?? "").contains("parameter \(name)"), "\(query): \(r.text)")
        }
        XCTAssertEqual(try server.get("/v1/entries/\(a)/kvsnap?prefix=true&dtype=f32").status, 200)
        XCTAssertEqual(try server.get("/v1/entries/\(a)/layout?segment=true").status, 200)
        XCTAssertEqual(try server.get("/v1/entries?limit=1&limit=2").status, 400, "repeated on any API route")
    }
}
