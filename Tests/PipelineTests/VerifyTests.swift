import Foundation
import XCTest
import LightKV
import Pipeline
import Store

final class VerifyTests: XCTestCase {
    func testIntactStoreVerifies() throws {
        let f = try StoreFixture()
        _ = try f.ingest(try f.snapshotFile())
        let report = try Verifier(root: f.root).verify()
        XCTAssertTrue(report.ok)
        XCTAssertEqual(report.checked, 1)
        XCTAssertEqual(report.orphans, [])
    }

    func testBlobWithoutIndexRowIsInvisibleAndReportedAsOrphan() throws {
        let f = try StoreFixture()
        let r = try f.ingest(try f.snapshotFile()).record
        // The state a crash between publishing the blob and inserting the row leaves behind.
        try f.root.index.db.query("DELETE FROM entries WHERE id = ?", [.text(r.id)])
        XCTAssertEqual(try f.root.index.all().count, 0)
        XCTAssertThrowsError(try f.root.index.resolve(r.id))
        let report = try Verifier(root: f.root).verify()
        XCTAssertTrue(report.ok, "an orphan is garbage, not damage")
        XCTAssertEqual(report.orphans, [f.root.blobs.location(r.blob)])
    }

    func testMissingBlobFailsVerify() throws {
        let f = try StoreFixture()
        let r = try f.ingest(try f.snapshotFile()).record
        try FileSystem.remove(f.root.blobs.location(r.blob))
        let report = try Verifier(root: f.root).verify()
        XCTAssertFalse(report.ok)
        XCTAssertTrue(report.failures[0].problem.contains("missing"), report.failures[0].problem)
    }

    func testAnEntryRemovedWhileVerifyRunsIsNotReportedAsDamage() throws {
        let f = try StoreFixture()
        let r = try f.ingest(try f.snapshotFile()).record
        // What verify saw in its listing, then what `rm` (or an eviction) did before its check.
        _ = try f.root.index.remove(r.id)
        try f.root.collectBlob(r.blob)
        let report = try Verifier(root: f.root).verify([r])
        XCTAssertTrue(report.ok, "\(report.failures.map(\.problem))")
        XCTAssertEqual(report.checked, 0, "a removed entry is not counted as checked")
    }

    func testAnEntrySwappedToANewBlobWhileVerifyRunsIsCheckedThere() throws {
        let f = try StoreFixture()
        let old = try f.ingest(try f.snapshotFile()).record
        var moved = old
        moved.blob = try f.ingest(try f.snapshotFile(name: "other.safetensors", seed: 9)).record.blob
        moved.checksum = moved.blob
        // A second row pointing at an intact blob, the way a compaction swap leaves it.
        _ = try f.root.index.replaceBlob(id: old.id, oldBlob: old.blob, with: moved)
        try FileSystem.remove(f.root.blobs.location(old.blob))
        let report = try Verifier(root: f.root).verify([old])
        XCTAssertEqual(report.checked, 1)
        XCTAssertTrue(report.ok, "\(report.failures.map(\.problem))")
    }

    func testEveryFlippedByteIsCaught() throws {
        let f = try StoreFixture()
        let r = try f.ingest(try f.snapshotFile()).record
        let path = f.root.blobs.location(r.blob)
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        // Flip one byte at a spread of offsets: magic, sections, header, footer.
        let offsets = Array(stride(from: 0, to: original.count, by: max(1, original.count / 97))) + [original.count - 1]
        for offset in offsets {
            var damaged = original
            damaged[offset] ^= 0x10
            try damaged.write(to: URL(fileURLWithPath: path))
            XCTAssertFalse(try Verifier(root: f.root).verify().ok, "flip at \(offset) of \(original.count) went unnoticed")
            XCTAssertThrowsError(try f.fetch(r.id), "fetch must fail rather than return wrong numbers (flip at \(offset))")
        }
    }

    func testSectionChecksumNamesTheLayer() throws {
        let f = try StoreFixture()
        let r = try f.ingest(try f.snapshotFile()).record
        let path = f.root.blobs.location(r.blob)
        let pack = try PackReader(path: path)
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        data[pack.header.layers[1].offset + 3] ^= 1
        try data.write(to: URL(fileURLWithPath: path))
        let damaged = try PackReader(path: path)
        XCTAssertNoThrow(try damaged.section(0))
        XCTAssertThrowsError(try damaged.section(1)) { XCTAssertTrue("\($0)".contains("layer 1: section checksum mismatch"), "\($0)") }
    }

    func testTruncatedPackIsCorrupt() throws {
        let f = try StoreFixture()
        let r = try f.ingest(try f.snapshotFile()).record
        let path = f.root.blobs.location(r.blob)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count - 5).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try PackReader(path: path)) { XCTAssertTrue("\($0)".contains("corrupt"), "\($0)") }
    }
}

final class CraftedPackTests: XCTestCase {
    /// Rewrites a pack's header JSON with `edit`, with a matching checksum, as a crafted
    /// (not merely damaged) file would have.
    private func craft(_ path: String, _ edit: (String) -> String) throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        let footer = data.count - 32
        let offset = Int(data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: footer, as: UInt64.self) })
        let json = edit(String(decoding: data[offset..<footer], as: UTF8.self))
        var bytes = Array(json.utf8)
        var tail = [UInt8](repeating: 0, count: 32)
        tail.withUnsafeMutableBytes { t in
            t.storeBytes(of: UInt64(offset).littleEndian, toByteOffset: 0, as: UInt64.self)
            t.storeBytes(of: UInt64(bytes.count).littleEndian, toByteOffset: 8, as: UInt64.self)
            t.storeBytes(of: bytes.withUnsafeBytes { Checksum.xxh3($0) }.littleEndian, toByteOffset: 16, as: UInt64.self)
        }
        tail.replaceSubrange(24..<32, with: Array("KVPKEND1".utf8))
        bytes += tail
        data.replaceSubrange(offset..<data.count, with: bytes)
        try data.write(to: URL(fileURLWithPath: path))
    }

    func testCraftedHeadersWithHugeNumbersAreCorruptNotACrash() throws {
        let f = try StoreFixture()
        let r = try f.ingest(try f.snapshotFile()).record
        let path = f.root.blobs.location(r.blob)
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        let edits: [(String, String)] = [
            ("\"count\":26", "\"count\":4611686018427387904"),
            ("\"kv_heads\":2", "\"kv_heads\":4611686018427387904"),
            ("\"seq_len\":26", "\"seq_len\":9223372036854775807"),
            ("\"stored_length\":", "\"stored_length\":9223372036854775000"),
            ("\"members\":0", "\"members\":-5"),
        ]
        for (from, to) in edits {
            try original.write(to: URL(fileURLWithPath: path))
            try craft(path) { json in
                XCTAssertTrue(json.contains(from), "\(from) in \(json.prefix(200))")
                return json.replacingOccurrences(of: from, with: to)
            }
            XCTAssertThrowsError(try PackReader(path: path).section(0), to) { XCTAssertTrue("\($0)".contains("corrupt"), "\($0)") }
            XCTAssertFalse(try Verifier(root: f.root).verify().ok, to)
        }
    }
}

/// Local blobs one of which cannot be opened now (a full table of open files).
private final class UnreadableBlobs: LocalBlobsWithHooks, @unchecked Sendable {
    var unreadable: String?
    override func readablePath(_ name: String) throws -> String {
        if name == unreadable { throw StoreError.io(path: local.location(name), operation: "open", errno: EMFILE) }
        return try local.readablePath(name)
    }
}

/// `verify` records what it finds damaged for `match` to pass over, never what it could not
/// read: a blob that cannot be opened now says nothing of the blob.
final class DamageRecordTests: XCTestCase {
    func testWhatVerifyCannotReadIsReportedButNotRecordedAsDamage() throws {
        let directory = NSTemporaryDirectory() + "kvstore-damage-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let blobs = UnreadableBlobs(try LocalBlobStore(root: directory))
        let root = StoreRoot(index: try EntryIndex(path: directory + "/index.sqlite"), blobs: blobs, path: directory)
        let record = try Ingestor(root: root).ingest(path: try StoreFixture.question(directory, 1), policy: try Policy(parsing: "none")).record
        let segment = try XCTUnwrap(record.segment)

        blobs.unreadable = segment
        XCTAssertEqual(try Verifier(root: root).verify().failures.count, 1, "reported")
        XCTAssertEqual(try root.index.damagedBlobs(), [:], "not recorded: nothing was found")
        blobs.unreadable = nil

        let path = blobs.location(segment)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try Verifier(root: root).verify().failures.count, 1)
        XCTAssertEqual(Array(try root.index.damagedBlobs().keys), [segment], "found damaged: recorded")
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertTrue(try Verifier(root: root).verify().ok)
        XCTAssertEqual(try root.index.damagedBlobs(), [:], "read back whole: forgotten")
    }
}
