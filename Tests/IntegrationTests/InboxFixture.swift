import Foundation
import XCTest

/// An inbox beside a scratch store, and a daemon (`kvstore watch`) running on it.
struct InboxFixture {
    let scratch: Scratch
    var inbox: String { scratch.path + "/inbox" }
    var done: String { inbox + "/done" }
    var failed: String { inbox + "/failed" }
    var work: String { inbox + "/.work" }

    init(_ scratch: Scratch) throws {
        self.scratch = scratch
        try FileManager.default.createDirectory(atPath: scratch.path + "/inbox", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: scratch.path + "/staging", withIntermediateDirectories: true)
        // Create the store up front (a daemon on an empty inbox of its own, once) so concurrent
        // daemons open the same one.
        let empty = scratch.path + "/empty-inbox"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let created = try scratch.cli.run("watch", empty, "--once")
        XCTAssertEqual(created.status, 0, created.stderr)
    }

    /// Writes a snapshot elsewhere and renames it in, as a well-behaved producer does.
    @discardableResult
    func drop(_ name: String, seed: Int, layers: Int = 3) throws -> String {
        let staged = try scratch.snapshot("staging/" + name, seed: seed, layers: layers)
        let path = inbox + "/" + name
        XCTAssertEqual(rename(staged, path), 0)
        return path
    }

    /// Starts `kvstore watch INBOX ARGS`, logging to `log` (a file under the scratch dir).
    func start(_ args: [String], log: String = "watch.log", environment: [String: String] = [:]) throws -> Process {
        let logPath = scratch.path + "/" + log
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        handle.seekToEndOfFile()
        return try scratch.cli.start(["watch", inbox] + args, stdout: FileHandle.nullDevice, stderr: handle, environment: environment)
    }

    func log(_ name: String = "watch.log") -> String {
        (try? String(contentsOfFile: scratch.path + "/" + name, encoding: .utf8)) ?? ""
    }

    static func names(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    /// Regular files directly in the inbox (not its folders).
    var inInbox: [String] {
        Self.names(inbox).filter { n in
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: inbox + "/" + n, isDirectory: &isDir) && !isDir.boolValue
        }
    }

    /// Files in every daemon's work folder.
    var inWork: [String] { Self.names(work).flatMap { Self.names(work + "/" + $0) } }

    var inDone: [String] { Self.names(done) }

    /// Producer keys (`key-SEED`) of every stored entry.
    func storedKeys() throws -> [String] {
        let ls = try scratch.cli.run("ls", "--json")
        let entries = try JSONSerialization.jsonObject(with: Data(ls.stdout.utf8)) as! [[String: Any]]
        return entries.compactMap { $0["key"] as? String }.sorted()
    }

    /// `verify --json`: failures (a row without its blob, a damaged blob) and orphans.
    func verify() throws -> (status: Int32, failures: Int, orphans: Int) {
        let r = try scratch.cli.run("verify", "--json")
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        return (r.status, (report["failures"] as! [Any]).count, (report["orphans"] as! [Any]).count)
    }

    /// Waits until `condition` holds, up to `timeout` seconds.
    func wait(timeout: Double, every interval: useconds_t = 20_000, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(interval)
        }
        return condition()
    }
}
