import Foundation
import XCTest

/// A store on a filesystem that fills up: ingests fail as transient, inputs stay in the inbox,
/// nothing goes to failed/, and once space is freed the daemon finishes the batch.
final class DiskFullTests: XCTestCase {
    private func mount(_ args: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/mount")
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    func testADiskFullIsRetriedAndLosesNothing() throws {
        let s = try Scratch()
        let store = s.path + "/store"
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        // A real full disk: a 320 KB tmpfs under the store (needs root; skipped elsewhere).
        guard getuid() == 0, mount(["-t", "tmpfs", "-o", "size=320k", "tmpfs", store]) == 0 else {
            throw XCTSkip("mounting a small tmpfs needs root and mount permission")
        }
        defer { Self.unmount(store) }
        let inbox = try InboxFixture(s)
        for seed in 0..<40 { try inbox.drop("f\(seed).safetensors", seed: seed) }
        let daemon = try inbox.start(["--settle", "0.05", "--interval", "0.05", "--jobs", "2"],
                                     environment: ["KVSTORE_BUSY_TIMEOUT_MS": "200"])
        XCTAssertTrue(inbox.wait(timeout: 20) { inbox.log().contains("transient failure") }, "the store fills up: \(inbox.log())")
        XCTAssertEqual(InboxFixture.names(inbox.failed), [], "a full disk never sends an input to failed/")
        // Free space: grow the filesystem; the daemon's retries go through.
        XCTAssertEqual(mount(["-o", "remount,size=16m", store]), 0)
        XCTAssertTrue(inbox.wait(timeout: 60) { inbox.inDone.count == 40 }, "done: \(inbox.inDone.count)\n\(inbox.log().suffix(2000))")
        kill(daemon.processIdentifier, SIGTERM)
        daemon.waitUntilExit()
        XCTAssertEqual(daemon.terminationStatus, 0)
        XCTAssertEqual(InboxFixture.names(inbox.failed), [])
        XCTAssertEqual(try inbox.storedKeys().count, 40, "every input stored once")
        let verify = try inbox.verify()
        XCTAssertEqual(verify.failures, 0)
        let log = inbox.log()
        XCTAssertTrue(log.contains("No space left on device") || log.contains("disk is full"), "the failures were the full disk")
    }

    func testAFullDiskWhenTheIndexIsFirstCreatedIsTransient() throws {
        let s = try Scratch()
        let store = s.path + "/store"
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        guard getuid() == 0, mount(["-t", "tmpfs", "-o", "size=256k", "tmpfs", store]) == 0 else {
            throw XCTSkip("mounting a small tmpfs needs root and mount permission")
        }
        defer { Self.unmount(store) }
        // Fill the filesystem before the store exists, leaving a little room or none: with a
        // few KB free SQLite fails mid-migration with a generic "disk I/O error".
        let fillerPath = s.path + "/store/filler"
        _ = FileManager.default.createFile(atPath: fillerPath, contents: nil)
        let filler = FileHandle(forWritingAtPath: fillerPath)!
        let chunk = Data(count: 4096)
        while (try? filler.write(contentsOf: chunk)) != nil {}
        let full = try filler.offset()
        let input = try s.snapshot("x.safetensors")
        for free: UInt64 in [0, 8 << 10, 16 << 10, 32 << 10] {
            try filler.truncate(atOffset: full - free)
            let r = try s.cli.run("ingest", "--store", s.path + "/store/s", input)
            XCTAssertEqual(r.status, 4, "\(free) bytes free: a full disk is transient, not a corrupt index: \(r.stderr)")
            try? FileManager.default.removeItem(atPath: s.path + "/store/s")
        }
        try filler.close()
    }

    func testReadsOfAHealthyStoreWorkOnAFullDisk() throws {
        let s = try Scratch()
        let store = s.path + "/store"
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        guard getuid() == 0, mount(["-t", "tmpfs", "-o", "size=2m", "tmpfs", store]) == 0 else {
            throw XCTSkip("mounting a small tmpfs needs root and mount permission")
        }
        defer { Self.unmount(store) }
        let ingest = try s.cli.run("ingest", "--policy", "lightkv+int8", try s.snapshot("x.safetensors"))
        XCTAssertEqual(ingest.status, 0, ingest.stderr)
        let id = ingest.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let before = try s.cli.run("fetch", id, "-o", "-").stdoutBytes
        let fillerPath = store + "/filler"
        _ = FileManager.default.createFile(atPath: fillerPath, contents: nil)
        let filler = FileHandle(forWritingAtPath: fillerPath)!
        while (try? filler.write(contentsOf: Data(count: 4096))) != nil {}
        try filler.close()
        for args in [["ls"], ["show", id], ["verify"], ["stats"]] {
            let r = try s.cli.run(args)
            XCTAssertEqual(r.status, 0, "\(args) on a full disk: \(r.stderr)")
        }
        let fetch = try s.cli.run("fetch", id, "-o", "-")
        XCTAssertEqual(fetch.status, 0, fetch.stderr)
        XCTAssertEqual(fetch.stdoutBytes, before, "a fetch to a stream needs no space in the store")
    }

    private static func unmount(_ path: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/umount")
        p.arguments = ["-l", path]
        try? p.run()
        p.waitUntilExit()
    }
}
