import Foundation
import XCTest
import LightKV

/// What `ingest` accepts it can serve back, and what `fetch` serves is the entry asked for,
/// undamaged, written where the user pointed (issue: "never lose a cache, never serve a wrong one").
final class FetchSafetyTests: XCTestCase {
    private func id(_ r: CLI.Result, file: StaticString = #filePath, line: UInt = #line) -> String {
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func blobPath(_ s: Scratch, _ id: String) throws -> String {
        let json = try s.cli.run("ls", "--json").stdoutBytes
        let rows = try JSONSerialization.jsonObject(with: json) as! [[String: Any]]
        let blob = rows.first { ($0["id"] as? String) == id }!["blob"] as! String
        return "\(s.path)/store/blobs/\(blob.prefix(2))/\(blob).kvpack"
    }

    private func key(_ path: String, layer: Int, at index: Int) throws -> Float {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try data.withUnsafeBytes { b in
            let x = try Snapshot(bytes: b)
            return x.floatLayer(layer).keys[index]
        }
    }

    func testEveryPolicyStoresValuesBeyondF16Readably() throws {
        let s = try Scratch()
        for dtype in [DType.f32, .bf16] {
            let input = try s.snapshot("big-\(dtype.rawValue).safetensors", dtype: dtype, peak: 1e5)
            for policy in ["none", "lightkv", "int8", "int4", "lightkv+int8", "lightkv+int4g128m0t0", "uniform55+int2"] {
                let store = "\(s.path)/store-\(dtype.rawValue)-\(policy)"
                let ingest = try s.cli.run("ingest", "--store", store, "--policy", policy, input)
                let entry = id(ingest)
                let out = "\(s.path)/out.safetensors"
                let fetch = try s.cli.run("fetch", "--store", store, entry, "--dtype", "f32", "-o", out)
                XCTAssertEqual(fetch.status, 0, "\(dtype) \(policy): \(fetch.stderr)")
                // Entry 9 of head 0 is vision at position 9; whether merged or kept, the peak survives.
                let data = try Data(contentsOf: URL(fileURLWithPath: out))
                let peak = try data.withUnsafeBytes { b in try Snapshot(bytes: b).floatLayer(0).keys.map(abs).max()! }
                XCTAssertGreaterThan(peak, 2e4, "\(dtype) \(policy): the large value is kept, not clamped to F16")
                let verify = try s.cli.run("verify", "--store", store)
                XCTAssertEqual(verify.status, 0, "\(dtype) \(policy): \(verify.stdout) \(verify.stderr)")
            }
        }
    }

    /// F32 values that BF16 would round to infinity (≥ 3.3961e38, up to F32's largest) are
    /// stored exactly or refused, under every policy; never turned into Inf.
    func testEveryPolicyKeepsTheLargestF32ValuesFinite() throws {
        let s = try Scratch()
        for peak: Float in [3.3961e38, .greatestFiniteMagnitude] {
            let input = try s.snapshot("huge.safetensors", dtype: .f32, peak: peak)
            for policy in ["none", "lightkv", "int8", "int4", "lightkv+int8", "lightkv+int4g128m0t0", "uniform55+int2", "airmerge20+int4g128m0t0r1"] {
                let store = "\(s.path)/store-\(peak)-\(policy)"
                let ingest = try s.cli.run("ingest", "--store", store, "--policy", policy, input)
                if ingest.status == 3 { continue }  // refused, input untouched: allowed
                XCTAssertEqual(ingest.status, 0, "\(peak) \(policy): \(ingest.stderr)")
                let out = "\(s.path)/out.safetensors"
                let fetch = try s.cli.run("fetch", "--store", store, id(ingest), "--dtype", "f32", "-o", out)
                XCTAssertEqual(fetch.status, 0, "\(peak) \(policy): \(fetch.stderr)")
                let data = try Data(contentsOf: URL(fileURLWithPath: out))
                let keys = try data.withUnsafeBytes { b in try Snapshot(bytes: b).floatLayer(0).keys }
                XCTAssertTrue(keys.allSatisfy(\.isFinite), "\(peak) \(policy): a finite input value came back infinite")
                XCTAssertGreaterThan(keys.map(abs).max()!, peak / 8, "\(peak) \(policy): the large value is kept")
            }
        }
    }

    func testF16FetchOfValuesBeyondF16IsRefusedWithTheWayOut() throws {
        let s = try Scratch()
        let entry = id(try s.cli.run("ingest", "--policy", "none", try s.snapshot("big.safetensors", dtype: .f32, peak: 1e5)))
        let out = s.path + "/out.safetensors"
        let f16 = try s.cli.run("fetch", entry, "-o", out)
        XCTAssertEqual(f16.status, 3, f16.stderr)
        XCTAssertTrue(f16.stderr.contains("layer 0 keys") && f16.stderr.contains("--dtype bf16"), f16.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "nothing is published")
        XCTAssertEqual(try s.cli.run("fetch", entry, "--dtype", "bf16", "-o", out).status, 0)
        XCTAssertEqual(try key(out, layer: 0, at: 16 * 9 + 3), 99840, accuracy: 600, "1e5 in BF16")
    }

    func testFetchRefusesAnotherEntrysBlobInPlace() throws {
        let s = try Scratch()
        let a = id(try s.cli.run("ingest", try s.snapshot("a.safetensors", seed: 1)))
        let b = id(try s.cli.run("ingest", try s.snapshot("b.safetensors", seed: 2)))
        let pathA = try blobPath(s, a), pathB = try blobPath(s, b)
        try FileManager.default.removeItem(atPath: pathA)
        try FileManager.default.copyItem(atPath: pathB, toPath: pathA)
        for args in [["-o", s.path + "/x"], ["--raw", "-o", s.path + "/x"], ["-o", "-"], ["--expand", "-o", "-"]] {
            let r = try s.cli.run(["fetch", a] + args)
            XCTAssertEqual(r.status, 3, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("another entry's blob"), r.stderr)
            XCTAssertEqual(r.stdoutBytes.count, 0, "\(args): nothing is written")
            XCTAssertFalse(FileManager.default.fileExists(atPath: s.path + "/x"))
        }
        XCTAssertEqual(try s.cli.run("fetch", b, "-o", s.path + "/y").status, 0, "the other entry is fine")
    }

    /// The same entry's earlier blob in the place of its current one is whole and names the
    /// right entry: only its content name tells. A fetch to a file checks the names while it
    /// writes (`ContentCheck`) and publishes nothing; a stream is checked before its first byte.
    func testFetchRefusesTheEntrysOwnEarlierBlobInPlace() throws {
        let s = try Scratch()
        let a = id(try s.cli.run("ingest", "--policy", "lightkv+int8", try s.snapshot("a.safetensors")))
        let earlier = try Data(contentsOf: URL(fileURLWithPath: try blobPath(s, a)))
        XCTAssertEqual(try s.cli.run("repack", "--policy", "none", a).status, 0)
        let path = try blobPath(s, a)
        try FileManager.default.removeItem(atPath: path)
        try earlier.write(to: URL(fileURLWithPath: path))
        for args in [["-o", s.path + "/x"], ["--expand", "-o", s.path + "/x"], ["-o", "-"], ["--raw", "-o", s.path + "/x"]] {
            let r = try s.cli.run(["fetch", a] + args)
            XCTAssertEqual(r.status, 3, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("content"), "\(args): \(r.stderr)")
            XCTAssertEqual(r.stdoutBytes.count, 0, "\(args): nothing is written")
            XCTAssertFalse(FileManager.default.fileExists(atPath: s.path + "/x"), "\(args): nothing is published")
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: s.path).filter { $0.hasPrefix("x.") }
        XCTAssertEqual(leftovers, [], "no temporary file is left")
    }

    func testRawFetchOfADamagedBlobWritesNothing() throws {
        let s = try Scratch()
        let a = id(try s.cli.run("ingest", "--policy", "lightkv+int8", try s.snapshot("a.safetensors")))
        let path = try blobPath(s, a)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let intact = bytes
        for damage in ["flip", "zero"] {
            bytes = intact
            if damage == "flip" { bytes[bytes.count / 3] ^= 0x10 } else { bytes.resetBytes(in: 0..<bytes.count) }
            try FileManager.default.removeItem(atPath: path)
            try bytes.write(to: URL(fileURLWithPath: path))
            for args in [["--raw", "-o", s.path + "/x"], ["--raw", "-o", "-"], ["-o", "-"]] {
                let r = try s.cli.run(["fetch", a] + args)
                XCTAssertEqual(r.status, 3, "\(damage) \(args): \(r.stderr)")
                XCTAssertEqual(r.stdoutBytes.count, 0, "\(damage) \(args): no damaged byte is served")
                XCTAssertFalse(FileManager.default.fileExists(atPath: s.path + "/x"))
            }
        }
    }

    func testFetchWritesIntoAFifoWithoutReplacingIt() throws {
        let s = try Scratch()
        let a = id(try s.cli.run("ingest", try s.snapshot("a.safetensors")))
        let fifo = s.path + "/pipe"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let received = Received()
        let done = DispatchSemaphore(value: 0)
        Thread {
            received.data = FileHandle(forReadingAtPath: fifo)?.readDataToEndOfFile() ?? Data()
            done.signal()
        }.start()
        let r = try s.cli.run("fetch", a, "-o", fifo)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        XCTAssertNoThrow(try received.data.withUnsafeBytes { _ = try Snapshot(bytes: $0) }, "the FIFO's reader got the kvsnap")
        var st = stat()
        XCTAssertEqual(lstat(fifo, &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFIFO, "still a FIFO")
    }

    func testFetchWritesIntoACharacterDeviceWithoutReplacingIt() throws {
        let s = try Scratch()
        let a = id(try s.cli.run("ingest", try s.snapshot("a.safetensors")))
        // A private null device (major 1, minor 3), so the test never risks the machine's /dev/null.
        let device = s.path + "/null"
        guard mknod(device, S_IFCHR | 0o666, dev_t((1 << 8) | 3)) == 0 else { throw XCTSkip("mknod needs root") }
        let r = try s.cli.run("fetch", a, "-o", device)
        XCTAssertEqual(r.status, 0, r.stderr)
        var st = stat()
        XCTAssertEqual(lstat(device, &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFCHR, "still a character device")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: s.path).filter { $0.hasPrefix("null.") }, [], "no temporary file beside it")
    }

    func testFetchFollowsASymlinkAndRefusesADanglingOne() throws {
        let s = try Scratch()
        let a = id(try s.cli.run("ingest", try s.snapshot("a.safetensors")))
        let target = s.path + "/target.safetensors", link = s.path + "/link.safetensors"
        try Data("old".utf8).write(to: URL(fileURLWithPath: target))
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        XCTAssertEqual(try s.cli.run("fetch", a, "-o", link).status, 0)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link), target, "the link stays a link")
        let written = try Data(contentsOf: URL(fileURLWithPath: target))
        XCTAssertNoThrow(try written.withUnsafeBytes { _ = try Snapshot(bytes: $0) }, "written through to the target")

        let dangling = s.path + "/dangling.safetensors"
        try FileManager.default.createSymbolicLink(atPath: dangling, withDestinationPath: s.path + "/nowhere/x")
        let r = try s.cli.run("fetch", a, "-o", dangling)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("symlink"), r.stderr)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: dangling), s.path + "/nowhere/x")
    }
}

/// Bytes a reader thread hands back.
private final class Received: @unchecked Sendable { var data = Data() }
