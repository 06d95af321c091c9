import Foundation
import XCTest
import LightKV
import Pipeline
import Store

final class IngestFetchTests: XCTestCase {
    func testFetchReturnsIdenticalKeysAndValuesForEveryDtype() throws {
        let f = try StoreFixture()
        for dtype in [DType.f16, .bf16, .f32] {
            let input = try f.snapshotFile(name: "\(dtype).safetensors", dtype: dtype)
            let outcome = try f.ingest(input)
            let data = try Data(contentsOf: URL(fileURLWithPath: input))
            let original = try data.withUnsafeBytes { try Snapshot(bytes: $0) }
            try data.withUnsafeBytes { _ in
                let fetched = try f.fetch(outcome.record.id, dtype: dtype).snapshot
                XCTAssertEqual(fetched.layerCount, 3)
                XCTAssertEqual(fetched.dtype, dtype)
                for i in 0..<3 {
                    XCTAssertEqual(Array(fetched.data(fetched.layers[i].key)), Array(original.data(original.layers[i].key)), "\(dtype) layer \(i) keys")
                    XCTAssertEqual(Array(fetched.data(fetched.layers[i].value)), Array(original.data(original.layers[i].value)), "\(dtype) layer \(i) values")
                    XCTAssertEqual(fetched.positions(layer: i), (0..<26).map { Int32($0) })
                    XCTAssertEqual(fetched.sizes(layer: i), Array(repeating: 1, count: 26))
                }
                XCTAssertEqual(fetched.metadata.model, "test/model")
                XCTAssertEqual(fetched.metadata.raw["kvsnap.seq_len"], "26")
                XCTAssertNotNil(fetched.metadata.raw["kvsnap.compression"])
            }
        }
    }

    func testFetchConvertsDtypeOnRequest() throws {
        let f = try StoreFixture()
        let outcome = try f.ingest(try f.snapshotFile(dtype: .f32))
        let fetched = try f.fetch(outcome.record.id, dtype: .f16).snapshot
        XCTAssertEqual(fetched.dtype, .f16)
        let expected = StoreFixture.values(2 * 26 * 16, seed: 0).map { Float(Float16($0)) }
        XCTAssertEqual(fetched.floatLayer(0).keys, expected)
    }

    func testSameSnapshotTwiceIsStoredOnce() throws {
        let f = try StoreFixture()
        let path = try f.snapshotFile()
        let first = try f.ingest(path)
        let copy = f.directory + "/copy.safetensors"
        try FileManager.default.copyItem(atPath: path, toPath: copy)
        let second = try f.ingest(copy)
        XCTAssertFalse(first.alreadyStored)
        XCTAssertTrue(second.alreadyStored)
        XCTAssertEqual(first.record.id, second.record.id)
        XCTAssertEqual(try f.root.index.all().count, 1)
        XCTAssertEqual(try f.root.blobs.names().count, 1)
    }

    func testIdsResolveByUniquePrefixAndByKey() throws {
        let f = try StoreFixture()
        let a = try f.ingest(try f.snapshotFile(name: "a.safetensors", seed: 1)).record
        let b = try f.ingest(try f.snapshotFile(name: "b.safetensors", seed: 2)).record
        XCTAssertNotEqual(a.id, b.id)
        XCTAssertEqual(a.id.count, 64)
        XCTAssertEqual(try f.root.index.resolve(String(a.id.prefix(10))).id, a.id)
        XCTAssertEqual(try f.root.index.resolve(a.id.uppercased()).id, a.id)
        XCTAssertEqual(try f.root.index.resolve("key-2", key: true).id, b.id)
        XCTAssertThrowsError(try f.root.index.resolve("")) { XCTAssertTrue("\($0)".contains("no entry matches")) }
        XCTAssertThrowsError(try f.root.index.resolve("zz")) { XCTAssertTrue("\($0)".contains("hexadecimal")) }
        XCTAssertThrowsError(try f.root.index.resolve("key-9", key: true)) { XCTAssertTrue("\($0)".contains("key key-9")) }
    }

    func testAmbiguousPrefixIsReported() throws {
        let f = try StoreFixture()
        var ids: [String] = []
        for seed in 0..<20 { ids.append(try f.ingest(try f.snapshotFile(name: "s\(seed).safetensors", seed: seed)).record.id) }
        // With 20 ids some pair shares its first hex digit.
        let first = Dictionary(grouping: ids, by: { $0.prefix(1) }).first { $0.value.count > 1 }!.key
        XCTAssertThrowsError(try f.root.index.resolve(String(first))) { XCTAssertTrue("\($0)".contains("ambiguous"), "\($0)") }
    }

    func testSourcesFindEveryEntryHoldingAnImage() throws {
        let f = try StoreFixture()
        let a = try f.ingest(try f.snapshotFile(name: "a.safetensors", seed: 1)).record
        let b = try f.ingest(try f.snapshotFile(name: "b.safetensors", seed: 2)).record
        let holders = try f.root.index.entries(withSource: "sha256:" + String(repeating: "cd", count: 32))
        XCTAssertEqual(Set(holders), [a.id, b.id])
    }

    func testInvalidSnapshotWritesNothing() throws {
        let f = try StoreFixture()
        let path = f.directory + "/bad.safetensors"
        try Data([1, 2, 3, 4, 5, 6, 7, 8, 9]).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try f.ingest(path)) { XCTAssertTrue("\($0)".contains("bad.safetensors"), "\($0)") }
        XCTAssertEqual(try f.root.index.all().count, 0)
        XCTAssertEqual(try f.root.blobs.names(), [])
        XCTAssertEqual(FileSystem.list(f.root.blobs.tempDirectory), [])
    }

    func testLz4PolicyRoundTrips() throws {
        let f = try StoreFixture()
        let path = try f.snapshotFile()
        let outcome = try f.ingest(path, policy: "none+lz4")
        XCTAssertEqual(outcome.record.policy, "none+lz4")
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        try original.withUnsafeBytes { raw in
            let s = try Snapshot(bytes: raw)
            let fetched = try f.fetch(outcome.record.id).snapshot
            XCTAssertEqual(Array(fetched.data(fetched.layers[2].value)), Array(s.data(s.layers[2].value)))
        }
    }

    func testRemoveDeletesRowAndBlob() throws {
        let f = try StoreFixture()
        let r = try f.ingest(try f.snapshotFile()).record
        XCTAssertNotNil(try f.root.index.remove(r.id))
        try FileSystem.remove(f.root.blobs.location(r.blob))
        XCTAssertThrowsError(try f.root.index.resolve(r.id))
        XCTAssertEqual(try f.root.blobs.names(), [])
    }
}

final class ExpandTests: XCTestCase {
    func testExpandPutsEveryMemberBackAtItsOwnPosition() throws {
        let f = try StoreFixture()
        // dense=0: the snapshot's random keys would make its image text-dense (docs/design/dense.md).
        let r = try f.ingest(try f.snapshotFile(layers: 4), policy: "lightkv:dense=0").record
        let merged = try f.fetch(r.id).snapshot
        XCTAssertLessThan(merged.layers[3].count, 26, "the deepest layer was merged")
        let out = f.directory + "/expanded.safetensors"
        let sink = try OutputSink(path: out)
        try Fetcher(root: f.root).fetch(try f.root.index.resolve(r.id), options: FetchOptions(expand: true), to: sink)
        let data = try Data(contentsOf: URL(fileURLWithPath: out))
        try data.withUnsafeBytes { raw in
            let expanded = try Snapshot(bytes: raw)
            for i in 0..<4 {
                XCTAssertEqual(expanded.positions(layer: i), (0..<26).map { Int32($0) }, "layer \(i)")
                XCTAssertEqual(expanded.sizes(layer: i), Array(repeating: 1, count: 26))
                // Every expanded entry equals the merged entry whose members include it.
                let m = merged.floatLayer(i), e = expanded.floatLayer(i)
                let mp = merged.positions(layer: i)
                for (j, p) in mp.enumerated() {
                    XCTAssertEqual(Array(e.keys[(Int(p) * 16)..<(Int(p) * 16 + 16)]), Array(m.keys[(j * 16)..<(j * 16 + 16)]))
                }
            }
        }
    }

    func testExpandRefusesEntriesThatArrivedMergedWithoutMembers() throws {
        let f = try StoreFixture()
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "m", spans: [.text(0, 2), .image(2, rows: 2, cols: 2), .text(6, 8)], seqLen: 8))
        b.add("layers.0.key", dtype: .f16, shape: [1, 6, 4], floats: StoreFixture.values(24, seed: 1))
        b.add("layers.0.value", dtype: .f16, shape: [1, 6, 4], floats: StoreFixture.values(24, seed: 2))
        b.add("layers.0.positions", shape: [6], ints: [0, 1, 2, 4, 6, 7])
        b.add("layers.0.sizes", shape: [6], ints: [1, 1, 2, 2, 1, 1])
        let path = f.directory + "/merged.safetensors"
        try Data(b.bytes()).write(to: URL(fileURLWithPath: path))
        let r = try f.ingest(path).record
        XCTAssertEqual(try f.fetch(r.id).snapshot.sizes(layer: 0), [1, 1, 2, 2, 1, 1], "an input's merges are kept")
        let out = f.directory + "/x.safetensors"
        let sink = try OutputSink(path: out)
        XCTAssertThrowsError(try Fetcher(root: f.root).fetch(try f.root.index.resolve(r.id), options: FetchOptions(expand: true), to: sink)) {
            XCTAssertTrue("\($0)".contains("layer 0"), "\($0)")
            XCTAssertTrue("\($0)".contains("cannot be expanded"), "\($0)")
        }
        sink.abandon()
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}

final class IngestFidelityTests: XCTestCase {
    private func tinyWithProbes(_ f: StoreFixture) throws -> String {
        let bytes = try SnapshotSynthesizer(spec: try SynthSpec.preset(named: "tiny")).bytes()
        let path = f.directory + "/tiny.safetensors"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testLossyIngestRecordsFidelityWhenTheInputHasProbes() throws {
        let f = try StoreFixture()
        let record = try f.ingest(try tinyWithProbes(f), policy: "lightkv+int4").record
        let json = try XCTUnwrap(record.fidelity)
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
        let proportional = object["proportional"] as! [String: Double]
        XCTAssertGreaterThan(proportional["cosine"]!, 0.9)
        XCTAssertGreaterThan(proportional["relative_error"]!, 0, "merging and int4 lose something")
        XCTAssertEqual(object["layers_measured"] as? [Int], [0, 2], "every 8th layer and the last of 3")
        XCTAssertLessThan(object["vision_retention"] as! Double, 1)
    }

    func testExactIngestAndFidelityOffRecordNothing() throws {
        let f = try StoreFixture()
        let path = try tinyWithProbes(f)
        XCTAssertNil(try f.ingest(path).record.fidelity, "the exact policy loses nothing")
        var ingestor = Ingestor(root: f.root)
        ingestor.fidelityMode = .off
        try f.root.index.db.query("DELETE FROM entries")
        XCTAssertNil(try ingestor.ingest(path: path, policy: try Policy(parsing: "lightkv")).record.fidelity)
    }
}

final class UnquantizedStorageTests: XCTestCase {
    func testReducedBF16InputKeepsUntouchedEntriesBitExact() throws {
        let f = try StoreFixture()
        let path = try f.snapshotFile(dtype: .bf16, layers: 4)
        let r = try f.ingest(path, policy: "lightkv").record
        let pack = try PackReader(path: f.root.blobs.location(r.blob))
        XCTAssertEqual(pack.header.layers[0].keys.encoding.scheme, "bf16", "stored in the input's dtype")
        let fetched = try f.fetch(r.id, dtype: .bf16).snapshot
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        try original.withUnsafeBytes { raw in
            let input = try Snapshot(bytes: raw)
            XCTAssertEqual(fetched.layers[0].count, 26, "layer 0 is before the first stage")
            XCTAssertEqual(Array(fetched.data(fetched.layers[0].key)), Array(input.data(input.layers[0].key)))
            XCTAssertEqual(Array(fetched.data(fetched.layers[0].value)), Array(input.data(input.layers[0].value)))
        }
    }

    func testF32ValuesBeyondF16RangeNeverBecomeInfinite() throws {
        let f = try StoreFixture()
        let spans: [Span] = [.text(0, 4, role: .system), .image(4, rows: 4, cols: 4), .text(20, 26, role: .prompt)]
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "m", spans: spans))
        for i in 0..<3 {
            var keys = StoreFixture.values(2 * 26 * 16, seed: i)
            keys[7] = 1.5e6  // a massive-activation outlier F16 cannot hold
            b.add("layers.\(i).key", dtype: .f32, shape: [2, 26, 16], floats: keys)
            b.add("layers.\(i).value", dtype: .f32, shape: [2, 26, 16], floats: StoreFixture.values(2 * 26 * 16, seed: 10 + i))
            b.add("layers.\(i).prompt_query", dtype: .f32, shape: [4, 3, 16], floats: StoreFixture.values(4 * 3 * 16, seed: 20 + i))
        }
        let path = f.directory + "/big.safetensors"
        try Data(b.bytes()).write(to: URL(fileURLWithPath: path))
        let r = try f.ingest(path, policy: "lightkv").record
        let fetched = try f.fetch(r.id, dtype: .f32).snapshot
        for i in 0..<3 {
            let keys = fetched.floatLayer(i).keys
            XCTAssertTrue(keys.allSatisfy(\.isFinite), "layer \(i)")
            XCTAssertEqual(keys[7], 1.5e6, accuracy: 1.5e6 / 128, "BF16 keeps the outlier's magnitude")
        }
    }
}
