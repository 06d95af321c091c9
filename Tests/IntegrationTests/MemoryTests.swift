import Foundation
import XCTest
import LightKV
import Store

/// The memory promise of docs/DESIGN.md ("Limits"): an ingest's peak RSS is at most
/// 100 MB + 2.5 × its largest layer for exact policies, and 100 MB + 6 × for policies that
/// quantize or reduce (they work on an F32 copy), whatever that layer's size.
final class MemoryTests: XCTestCase {
    /// One layer of `heads × tokens × 128` F16 keys and values (`heads · tokens · 512` bytes),
    /// finite values from a small table, written without building floats.
    private func singleLayer(_ s: Scratch, heads: Int, tokens: Int) throws -> String {
        let spans: [Span] = [.text(0, 4, role: .system), .image(4, rows: 1, cols: tokens - 8, source: nil), .text(tokens - 4, tokens, role: .prompt)]
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "test/big", spans: spans))
        let table: [UInt16] = (0..<251).map { Float16(Float($0 % 17) / 8 - 1).bitPattern }
        var bytes = [UInt8](repeating: 0, count: heads * tokens * 128 * 2)
        bytes.withUnsafeMutableBytes { raw in
            let v = raw.bindMemory(to: UInt16.self)
            for i in v.indices { v[i] = table[i % 251] }
        }
        b.add("layers.0.key", dtype: .f16, shape: [heads, tokens, 128], bytes: bytes)
        b.add("layers.0.value", dtype: .f16, shape: [heads, tokens, 128], bytes: bytes)
        let path = s.path + "/big.safetensors"
        try Data(b.bytes()).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Runs `kvstore ARGS` and returns its exit status and peak RSS in bytes, as GNU time
    /// reports it. Not wait4's rusage of a child spawned from here: posix_spawn shares this
    /// process's memory until exec, and Linux carries the sharer's high-water mark into the
    /// child's `ru_maxrss` (exec_mmap), so a test process that once held 270 MB reported
    /// 270 MB for any child. GNU time forks, so its child starts from time's own few MB.
    private func peakRSS(_ args: [String], store: String, scratch: Scratch) throws -> (status: Int32, bytes: Int) {
        let report = scratch.path + "/maxrss-\(UUID().uuidString)"
        var pid: pid_t = 0
        let argv = (["/usr/bin/time", "-f", "%M", "-o", report, CLI.binary, args[0], "--store", store] + args.dropFirst())
            .map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        let spawned = posix_spawn(&pid, "/usr/bin/time", &actions, nil, argv, environ)
        // A failed spawn leaves pid 0, and waitpid(0) would wait for any child of this process.
        _ = try XCTUnwrap(spawned == 0 ? pid : nil, "/usr/bin/time: \(String(cString: strerror(spawned))) "
                          + "(GNU time, Debian's `time`, measures a child's own peak RSS; `make test-deps` installs it)")
        var status: Int32 = 0
        XCTAssertEqual(waitpid(pid, &status, 0), pid)
        // time writes "Command exited with non-zero status N" before the figure when N != 0.
        let lines = try String(contentsOfFile: report, encoding: .utf8).split(separator: "\n")
        let kilobytes = try XCTUnwrap(lines.last.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }, "\(report): \(lines)")
        return ((status >> 8) & 0xFF, kilobytes * 1024)
    }

    /// A reduction that surveys every layer before compressing any, storing a shared prefix as
    /// a segment: each layer's pages are let go once surveyed, so a 128 MB input of 2 MB layers
    /// stays within the promise (it held the whole file, 394 MB for a 340 MB one, before).
    func testPeakMemoryOfASurveyingSegmentedIngestIsWithinThePromise() throws {
        let s = try Scratch()
        let (layers, heads, tokens) = (64, 8, 512)
        let spans: [Span] = [.text(0, 4, role: .system), .image(4, rows: 8, cols: 63, source: nil), .text(508, tokens, role: .prompt)]
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "test/deep", spans: spans))
        for i in 0..<layers {
            let table: [UInt16] = (0..<251).map { Float16(Float(($0 + i) % 17) / 8 - 1).bitPattern }
            var bytes = [UInt8](repeating: 0, count: heads * tokens * 128 * 2)
            bytes.withUnsafeMutableBytes { raw in
                let v = raw.bindMemory(to: UInt16.self)
                for j in v.indices { v[j] = table[(j / 128 + j % 7) % 251] }
            }
            b.add("layers.\(i).key", dtype: .f16, shape: [heads, tokens, 128], bytes: bytes)
            b.add("layers.\(i).value", dtype: .f16, shape: [heads, tokens, 128], bytes: bytes)
        }
        b.addInputIDs((0..<tokens).map { Int64($0) })
        let input = s.path + "/deep.safetensors"
        try Data(b.bytes()).write(to: URL(fileURLWithPath: input))
        let promise = 100 << 20 + 6 * (2 * heads * tokens * 128 * 2)
        // Unguided, and guided (which hashes the unreduced prefix first: design/segments.md).
        for policy in ["airmerge35:evict=0:guide=none", "airmerge35:evict=0"] {
            let store = s.path + "/store-\(policy.count)"
            let (status, peak) = try peakRSS(["ingest", "--policy", policy, "--fidelity", "off", input], store: store, scratch: s)
            print("\(policy), 64 layers of 2 MB: peak RSS \(peak >> 20) MB")
            XCTAssertEqual(status, 0)
            XCTAssertLessThan(peak, promise, "\(policy): peak RSS \(peak >> 20) MB, promised under \(promise >> 20) MB")
            let segment = try XCTUnwrap(try EntryIndex(path: store + "/index.sqlite").all().first).segment
            XCTAssertNotNil(segment, "\(policy): stored as a segment and its part")
        }
    }

    func testPeakMemoryOfALargeSingleLayerIngestIsWithinThePromise() throws {
        let s = try Scratch()
        // 8 heads × 16,384 tokens × 128: a 32 MB key and a 32 MB value block.
        let input = try singleLayer(s, heads: 8, tokens: 16_384)
        let layer = 64 << 20
        for (policy, factor) in [("none", 2.5), ("int8", 6.0)] {
            let promise = 100 << 20 + Int(factor * Double(layer))
            let started = Date()
            let (status, peak) = try peakRSS(["ingest", "--policy", policy, input], store: s.path + "/store-\(policy)", scratch: s)
            print("\(policy): peak RSS \(peak >> 20) MB in \(Date().timeIntervalSince(started)) s")
            XCTAssertEqual(status, 0, policy)
            XCTAssertLessThan(peak, promise, "\(policy): peak RSS \(peak >> 20) MB, promised under \(promise >> 20) MB")
        }
    }
}
