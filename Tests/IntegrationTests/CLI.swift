import Foundation
import LightKV

/// Runs the built `kvstore` binary, the way users and cron do.
struct CLI {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var stdoutBytes: Data
    }

    let store: String

    static var binary: String {
        let dir = Bundle.main.bundleURL.path
        for candidate in [dir + "/kvstore", dir + "/../kvstore"] where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return dir + "/kvstore"
    }

    /// Starts `kvstore ARGS` without waiting.
    /// With `descriptorLimit`, under `ulimit -n` of that many (soft and hard).
    func start(_ args: [String], stdout: FileHandle? = nil, stderr: FileHandle? = nil,
               environment: [String: String] = [:], descriptorLimit: Int? = nil) throws -> Process {
        let p = Process()
        if let descriptorLimit {
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "ulimit -n \(descriptorLimit) && exec \"$0\" \"$@\"", Self.binary] + args
        } else {
            p.executableURL = URL(fileURLWithPath: Self.binary)
            p.arguments = args
        }
        var env = ProcessInfo.processInfo.environment
        env["KVSTORE_HOME"] = store
        env.merge(environment) { $1 }
        p.environment = env
        if let stdout { p.standardOutput = stdout }
        if let stderr { p.standardError = stderr }
        try p.run()
        return p
    }

    /// Runs `kvstore ARGS` to completion.
    @discardableResult
    func run(_ args: String...) throws -> Result { try run(args) }

    func run(_ args: [String], environment: [String: String] = [:]) throws -> Result {
        let out = Pipe(), err = Pipe()
        let p = try start(args, stdout: out.fileHandleForWriting, stderr: err.fileHandleForWriting, environment: environment)
        out.fileHandleForWriting.closeFile()
        err.fileHandleForWriting.closeFile()
        var outData = Data(), errData = Data()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self), stdoutBytes: outData)
    }
}

/// A scratch directory with small kvsnap files.
final class Scratch {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "kvstore-it-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    var cli: CLI { CLI(store: path + "/store") }

    /// A kvsnap file: 4 system tokens, a 4×4 image, 6 prompt tokens, with prompt and probe queries.
    @discardableResult
    /// `peak` puts one key element of layer 0 at that magnitude (F32 or BF16 inputs hold
    /// values beyond F16's range).
    func snapshot(_ name: String, seed: Int = 0, layers: Int = 3, nan: Bool = false,
                  dtype: DType = .f16, peak: Float? = nil) throws -> String {
        let spans: [Span] = [.text(0, 4, role: .system), .image(4, rows: 4, cols: 4, source: "sha256:" + String(repeating: "ef", count: 32)),
                             .text(20, 26, role: .prompt)]
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "test/model", spans: spans, key: "key-\(seed)"))
        for i in 0..<layers {
            var keys = values(2 * 26 * 16, seed: seed * 100 + 2 * i)
            if nan && i == layers - 1 { keys[5] = .nan }
            if let peak, i == 0 { keys[16 * 9 + 3] = peak }
            b.add("layers.\(i).key", dtype: dtype, shape: [2, 26, 16], floats: keys)
            b.add("layers.\(i).value", dtype: dtype, shape: [2, 26, 16], floats: values(2 * 26 * 16, seed: seed * 100 + 2 * i + 1))
            b.add("layers.\(i).prompt_query", dtype: dtype, shape: [4, 3, 16], floats: values(4 * 3 * 16, seed: seed * 100 + 50 + i))
            b.add("layers.\(i).probe_query", dtype: dtype, shape: [4, 2, 16], floats: values(4 * 2 * 16, seed: seed * 100 + 70 + i))
        }
        let file = path + "/" + name
        try Data(b.bytes()).write(to: URL(fileURLWithPath: file))
        return file
    }

    /// Fetches entry `id` as stored and with `--expand`, then hands both files to `body`.
    func withFetchedAndExpanded(_ id: String, _ body: (_ merged: Snapshot, _ expanded: Snapshot) throws -> Void) throws {
        let merged = path + "/merged.safetensors", expanded = path + "/expanded.safetensors"
        let f = try cli.run("fetch", id, "-o", merged)
        guard f.status == 0 else { throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: f.stderr]) }
        let e = try cli.run("fetch", id, "--expand", "-o", expanded)
        guard e.status == 0 else { throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: e.stderr]) }
        let m = try Data(contentsOf: URL(fileURLWithPath: merged)), x = try Data(contentsOf: URL(fileURLWithPath: expanded))
        try m.withUnsafeBytes { mb in
            try x.withUnsafeBytes { xb in try body(try Snapshot(bytes: mb), try Snapshot(bytes: xb)) }
        }
    }

    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let file = path + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        return file
    }

    private func values(_ count: Int, seed: Int) -> [Float] {
        var state = UInt64(truncatingIfNeeded: seed) &* 0x9E37_79B9_7F4A_7C15 &+ 1
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int(state >> 40) % 256) / 64 - 2
        }
    }
}
