import Foundation
import LightKV
import Store
import XCTest

/// Where a fetch writes and what it leaves when it refuses: a segmented entry whose segment is
/// another image's is refused in every mode with the user's file untouched; the store's own
/// files are never an output; a raw fetch of a segmented entry writes nothing unless its output
/// is a regular file (docs/design/store.md, "Guarantees").
final class FetchOutputTests: XCTestCase {
    private func ingest(_ s: Scratch, _ file: String) throws -> String {
        let r = try s.cli.run("ingest", "--policy", "int8", file)
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func segmentPath(_ s: Scratch, _ id: String) throws -> String {
        let record = try XCTUnwrap(try EntryIndex(path: s.path + "/store/index.sqlite").entry(id: id))
        return try StoreRoot(path: s.path + "/store").blobs.readablePath(try XCTUnwrap(record.segment))
    }

    private func files(_ folder: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
    }

    /// Another image's segment in this entry's segment's place: every section checks out (it
    /// is a whole segment), only its content name tells. Every mode refuses it, the file the
    /// user had at the output is kept, and nothing else is left in the folder.
    func testAnotherImagesSegmentInPlaceIsRefusedInEveryModeAndTheOutputKept() throws {
        let s = try Scratch()
        let a = try ingest(s, try s.question("a1.safetensors", question: 1))
        _ = try ingest(s, try s.question("a2.safetensors", question: 2))
        let b = try ingest(s, try s.question("b1.safetensors", question: 1, seed: 5))
        let (own, other) = (try segmentPath(s, a), try segmentPath(s, b))
        XCTAssertNotEqual(own, other)
        try FileManager.default.removeItem(atPath: own)
        try FileManager.default.copyItem(atPath: other, toPath: own)
        let out = s.path + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try Data("ORIG".utf8).write(to: URL(fileURLWithPath: out + "/o"))
        for args in [[], ["--prefix"], ["--expand"], ["--raw"], ["--dtype", "f32"]] {
            let r = try s.cli.run(["fetch", a] + args + ["-o", out + "/o"])
            XCTAssertEqual(r.status, 3, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("content is"), "\(args): \(r.stderr)")
            XCTAssertEqual(try String(contentsOfFile: out + "/o", encoding: .utf8), "ORIG", "\(args): the user's file is kept")
            XCTAssertEqual(try files(out), ["o"], "\(args): no temporary file and no segment is left")
        }
        let stream = try s.cli.run("fetch", a, "-o", "-")
        XCTAssertEqual(stream.status, 3, stream.stderr)
        XCTAssertEqual(stream.stdoutBytes.count, 0, "a stream gets no byte")
        XCTAssertEqual(try s.cli.run("fetch", b, "-o", out + "/b").status, 0, "the other image's entry is fine")
    }

    /// An output that is one of the store's files (a blob, a symlink to one, the index, a
    /// temporary file) would replace it: refused as a usage error, and every entry still verifies.
    func testAFetchNeverWritesIntoTheStore() throws {
        let s = try Scratch()
        let a = try ingest(s, try s.question("a1.safetensors", question: 1))
        _ = try ingest(s, try s.question("a2.safetensors", question: 2))
        let segment = try segmentPath(s, a)
        let link = s.path + "/link.kvpack"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: segment)
        for target in [segment, link, s.path + "/store/index.sqlite", s.path + "/store/tmp/x", s.path + "/store/blobs/new"] {
            for args in [[], ["--raw"]] {
                let r = try s.cli.run(["fetch", a] + args + ["-o", target])
                XCTAssertEqual(r.status, 1, "\(target) \(args): \(r.stderr)")
                XCTAssertTrue(r.stderr.contains("store's own"), r.stderr)
            }
        }
        let verify = try s.cli.run("verify")
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: s.path + "/store/blobs/new"))
    }

    /// SIGTERM while a fetch writes its temporary file: the file goes with the process (it lies
    /// in the user's folder, where nothing collects it), and the exit is the signal's.
    func testAFetchStoppedBySIGTERMLeavesNoTemporaryFile() throws {
        let s = try Scratch()
        // 16 layers of 8 heads × 512 entries: a fetch long enough to be caught writing.
        let spans: [Span] = [.text(0, 4, role: .system), .image(4, rows: 16, cols: 30, source: "sha256:" + String(repeating: "12", count: 32)),
                             .text(484, 512, role: .prompt)]
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "test/model", spans: spans, key: "big"))
        let values = (0..<(8 * 512 * 64)).map { Float(sin(Double($0) * 0.37)) }
        for i in 0..<16 {
            b.add("layers.\(i).key", dtype: .f16, shape: [8, 512, 64], floats: values)
            b.add("layers.\(i).value", dtype: .f16, shape: [8, 512, 64], floats: values)
        }
        let input = s.path + "/big.safetensors"
        try Data(b.bytes()).write(to: URL(fileURLWithPath: input))
        let stored = try s.cli.run("ingest", input)
        XCTAssertEqual(stored.status, 0, stored.stderr)
        let id = stored.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let out = s.path + "/out"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        for _ in 0..<20 {
            let fetch = try s.cli.start(["fetch", id, "-o", out + "/o"])
            // Stop it as soon as its temporary file appears.
            while fetch.isRunning, (try files(out)).allSatisfy({ !$0.hasPrefix("o.") }) { usleep(200) }
            if fetch.isRunning { kill(fetch.processIdentifier, SIGTERM) }
            fetch.waitUntilExit()
            if fetch.terminationStatus == 0 {  // finished first: try again
                try FileManager.default.removeItem(atPath: out + "/o")
                continue
            }
            XCTAssertEqual(fetch.terminationStatus, 128 + SIGTERM)
            XCTAssertEqual(try files(out), [], "no temporary file, and nothing published")
            return
        }
        throw XCTSkip("every fetch finished before it could be stopped")
    }

    /// A segmented entry's raw fetch is two files: its output must be a regular file for the
    /// segment to go beside it. Onto a folder, standard output or a device it is refused
    /// before anything is written anywhere.
    func testARawFetchOfASegmentedEntryWritesNothingUnlessToARegularFile() throws {
        let s = try Scratch()
        let a = try ingest(s, try s.question("a1.safetensors", question: 1))
        let out = s.path + "/out"
        try FileManager.default.createDirectory(atPath: out + "/d", withIntermediateDirectories: true)
        let directory = try s.cli.run("fetch", a, "--raw", "-o", out + "/d")
        XCTAssertNotEqual(directory.status, 0)
        XCTAssertEqual(try files(out), ["d"], "no segment beside the folder")
        XCTAssertEqual(try files(out + "/d"), [], "nor in it")
        let stream = try s.cli.run("fetch", a, "--raw", "-o", "-")
        XCTAssertEqual(stream.status, 3, stream.stderr)
        XCTAssertTrue(stream.stderr.contains("regular file"), stream.stderr)
        XCTAssertEqual(stream.stdoutBytes.count, 0)
        let device = out + "/null"
        if mknod(device, S_IFCHR | 0o666, dev_t((1 << 8) | 3)) == 0 {
            let r = try s.cli.run("fetch", a, "--raw", "-o", device)
            XCTAssertEqual(r.status, 3, r.stderr)
            XCTAssertEqual(try files(out), ["d", "null"], "no segment beside the device")
        }
        let file = try s.cli.run("fetch", a, "--raw", "-o", out + "/a.kvpack")
        XCTAssertEqual(file.status, 0, file.stderr)
        XCTAssertEqual(try files(out).filter { $0.hasSuffix(".kvpack") }.count, 2, "the part and its segment beside it")
    }
}
