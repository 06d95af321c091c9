import Foundation
import LightKV
import Pipeline
import Store

/// A fresh store in a temporary directory, and small kvsnap files to feed it.
final class StoreFixture {
    let directory: String
    let root: StoreRoot

    init() throws {
        directory = NSTemporaryDirectory() + "kvstore-test-" + UUID().uuidString
        root = try StoreRoot(path: directory + "/store")
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// Writes a snapshot: 4 system tokens, a 4×4 image, 6 prompt tokens.
    func snapshotFile(name: String = "in.safetensors", dtype: DType = .f16, seed: Int = 0, layers: Int = 3) throws -> String {
        let spans: [Span] = [.text(0, 4, role: .system), .image(4, rows: 4, cols: 4, source: "sha256:" + String(repeating: "cd", count: 32)),
                             .text(20, 26, role: .prompt)]
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "test/model", spans: spans, key: "key-\(seed)"))
        for i in 0..<layers {
            b.add("layers.\(i).key", dtype: dtype, shape: [2, 26, 16], floats: Self.values(2 * 26 * 16, seed: seed * 100 + 2 * i))
            b.add("layers.\(i).value", dtype: dtype, shape: [2, 26, 16], floats: Self.values(2 * 26 * 16, seed: seed * 100 + 2 * i + 1))
            b.add("layers.\(i).prompt_query", dtype: dtype, shape: [4, 3, 16], floats: Self.values(4 * 3 * 16, seed: seed * 100 + 50 + i))
        }
        let path = directory + "/" + name
        try Data(b.bytes()).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// 4 system tokens, a 4×4 image and 6 prompt tokens with ids; the prefix is the same for
    /// every question, the prompt and its queries are the question's own.
    static func question(_ directory: String, _ n: Int) throws -> String {
        let spans: [Span] = [.text(0, 4, role: .system), .image(4, rows: 4, cols: 4, source: nil), .text(20, 26, role: .prompt)]
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "test/model", spans: spans, key: "q\(n)"))
        for i in 0..<2 {
            var keys = StoreFixture.values(2 * 26 * 16, seed: 2 * i), values = StoreFixture.values(2 * 26 * 16, seed: 2 * i + 1)
            for h in 0..<2 { for t in 20..<26 { for d in 0..<16 {
                keys[(h * 26 + t) * 16 + d] = Float(n) / 10 + Float(d) / 100
                values[(h * 26 + t) * 16 + d] = -Float(n) / 10
            } } }
            b.add("layers.\(i).key", dtype: .f16, shape: [2, 26, 16], floats: keys)
            b.add("layers.\(i).value", dtype: .f16, shape: [2, 26, 16], floats: values)
            b.add("layers.\(i).prompt_query", dtype: .f16, shape: [4, 3, 16], floats: StoreFixture.values(4 * 3 * 16, seed: 50 + 7 * n + i))
        }
        b.addInputIDs((0..<26).map { Int64($0 < 20 ? 1000 + $0 : 5000 + 10 * n + $0) })
        let path = directory + "/q\(n).safetensors"
        try Data(b.bytes()).write(to: URL(fileURLWithPath: path))
        return path
    }

    static func values(_ count: Int, seed: Int) -> [Float] {
        var state = UInt64(truncatingIfNeeded: seed) &* 0x9E37_79B9_7F4A_7C15 &+ 1
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int(state >> 40) % 256) / 64 - 2
        }
    }

    func ingest(_ path: String, policy: String = "none") throws -> IngestOutcome {
        try Ingestor(root: root).ingest(path: path, policy: try Policy(parsing: policy))
    }

    /// Fetches an entry to a file and parses it.
    func fetch(_ id: String, dtype: DType = .f16) throws -> (bytes: [UInt8], snapshot: Snapshot) {
        let out = directory + "/out-\(UUID().uuidString).safetensors"
        let sink = try OutputSink(path: out)
        try Fetcher(root: root).fetch(try root.index.resolve(id), options: FetchOptions(dtype: dtype), to: sink)
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: out)))
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
        bytes.withUnsafeBytes { copy.copyMemory(from: $0) }
        return (bytes, try Snapshot(bytes: UnsafeRawBufferPointer(copy)))
    }
}
