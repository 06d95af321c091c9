import Foundation
import LightKV
import XCTest

/// The dense-span guard through the binary (docs/design/dense.md): an image whose keys differ
/// from their neighbours is stored whole and says so; a synth image, whose neighbours are
/// near-duplicates, is reduced as before.
final class DenseSpanTests: XCTestCase {
    private func entry(_ s: Scratch, _ file: String, policy: String) throws -> (id: String, compression: [String: Any]) {
        let r = try s.cli.run("ingest", "--policy", policy, file)
        XCTAssertEqual(r.status, 0, r.stderr)
        let id = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let show = try s.cli.run("show", id, "--json")
        XCTAssertEqual(show.status, 0, show.stderr)
        let document = try XCTUnwrap(try JSONSerialization.jsonObject(with: show.stdoutBytes) as? [String: Any])
        return (id, try XCTUnwrap(document["compression"] as? [String: Any]))
    }

    private func layers(_ s: Scratch, _ id: String) throws -> [(positions: [Int32], keys: [UInt8], values: [UInt8])] {
        let r = try s.cli.run("fetch", id, "-o", "-")
        XCTAssertEqual(r.status, 0, r.stderr)
        return try r.stdoutBytes.withUnsafeBytes { b in
            let x = try Snapshot(bytes: b)
            return (0..<x.layerCount).map { (x.positions(layer: $0), Array(x.data(x.layers[$0].key)), Array(x.data(x.layers[$0].value))) }
        }
    }

    func testAnImageOfDistinctEntriesIsStoredWholeAndSaysSo() throws {
        let s = try Scratch()
        let input = try s.snapshot("distinct.safetensors", layers: 4)   // random keys: no near-duplicates
        for policy in ["lightkv", "airmerge35", "aircache35", "tome55"] {
            let (id, record) = try entry(s, input, policy: policy)
            XCTAssertEqual(record["dense_spans"] as? String, "1", policy)
            XCTAssertEqual(record["vision_retention"] as? String, "1.0000", policy)
            XCTAssertEqual(try layers(s, id).map(\.positions), Array(repeating: (0..<26).map { Int32($0) }, count: 4), policy)
            XCTAssertEqual(try s.cli.run("rm", id).status, 0)
        }
        // The method as published reduces it.
        let (id, record) = try entry(s, input, policy: "lightkv:dense=0")
        XCTAssertNil(record["dense_spans"])
        XCTAssertLessThan(try layers(s, id)[3].positions.count, 26)
    }

    func testAnImageWholeUnderTheGuardIsTheSameBytesAsUnderNone() throws {
        let s = try Scratch()
        let input = try s.snapshot("distinct.safetensors", layers: 3)
        let (guarded, _) = try entry(s, input, policy: "airmerge35+int8")
        let guardedLayers = try layers(s, guarded)
        XCTAssertEqual(try s.cli.run("rm", guarded).status, 0)
        let (plain, _) = try entry(s, input, policy: "int8")
        let plainLayers = try layers(s, plain)
        for i in guardedLayers.indices {
            XCTAssertEqual(guardedLayers[i].positions, plainLayers[i].positions, "layer \(i)")
            XCTAssertEqual(guardedLayers[i].keys, plainLayers[i].keys, "layer \(i) keys")
            XCTAssertEqual(guardedLayers[i].values, plainLayers[i].values, "layer \(i) values")
        }
    }

    func testASynthImageIsReducedAsBefore() throws {
        let s = try Scratch()
        let input = s.path + "/synth.safetensors"
        XCTAssertEqual(try s.cli.run("synth", "--preset", "tiny", "-o", input).status, 0)
        let (id, record) = try entry(s, input, policy: "lightkv")
        XCTAssertEqual(record["dense_spans"] as? String, "none")
        XCTAssertEqual(record["span_redundancy"] as? String, "1:1.00")
        let b = try layers(s, id)
        XCTAssertEqual(try s.cli.run("rm", id).status, 0)
        let (unguarded, _) = try entry(s, input, policy: "lightkv:dense=0")
        let a = try layers(s, unguarded)
        XCTAssertLessThan(b.last!.positions.count, b.first!.positions.count, "merged")
        for i in a.indices {
            XCTAssertEqual(a[i].positions, b[i].positions, "layer \(i)")
            XCTAssertEqual(a[i].keys, b[i].keys, "layer \(i)")
        }
    }
}
