import Foundation
import XCTest
import LightKV
import Pipeline
import Store

/// Seeded fuzzing of ingest and fetch (a few hundred cases; `scripts/fuzz.sh` runs
/// thousands through the binary). The properties: nothing crashes, whatever ingest accepts
/// reads back, and fetch never returns other bytes than the entry's.
final class FuzzTests: XCTestCase {
    /// A small deterministic generator, so a failure names a case that can be replayed.
    private struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state ^ (state >> 29)
        }
    }

    private static let policies = ["none", "lightkv", "int8", "lightkv+int4g128m0t0", "uniform55+int2", "tome35+int4"]

    /// One mutation of a snapshot file: bytes flipped in the header or data, a truncation, a
    /// rewritten header length, or an extreme value (beyond F16, a huge magnitude) in the data.
    private static func mutate(_ bytes: [UInt8], _ g: inout Generator) -> (bytes: [UInt8], what: String) {
        var b = bytes
        let headerEnd = 8 + Int(UInt64(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
        switch Int.random(in: 0..<6, using: &g) {
        case 0:
            let i = Int.random(in: 8..<headerEnd, using: &g)
            b[i] = UInt8.random(in: 0...255, using: &g)
            return (b, "header byte \(i)")
        case 1:
            for _ in 0..<Int.random(in: 1...8, using: &g) { b[Int.random(in: headerEnd..<b.count, using: &g)] ^= UInt8.random(in: 1...255, using: &g) }
            return (b, "data bytes")
        case 2:
            let n = Int.random(in: 0..<b.count, using: &g)
            return (Array(b[0..<n]), "truncated to \(n)")
        case 3:
            let n = UInt64.random(in: 0...UInt64(b.count + 64), using: &g)
            withUnsafeBytes(of: n.littleEndian) { b.replaceSubrange(0..<8, with: $0) }
            return (b, "header length \(n)")
        case 4:
            // An element (2 or 4 bytes wide) set to a large finite value of the file's dtype.
            let i = Int.random(in: headerEnd..<(b.count - 4), using: &g) & ~3
            let pattern: [UInt8] = [[0x00, 0x50, 0xC3, 0x47], [0xFF, 0x7B, 0xFF, 0x7B], [0x7F, 0x7F, 0x7F, 0x7F]][Int.random(in: 0..<3, using: &g)]
            b.replaceSubrange(i..<(i + 4), with: pattern)
            return (b, "large value at \(i)")
        default:
            let text = String(decoding: b[8..<headerEnd], as: UTF8.self)
            let edits = [("[2,26,16]", "[2,26,17]"), ("\"F16\"", "\"F32\""), ("\"end\":20", "\"end\":19"), ("[4,4]", "[2,8]"), ("[4,3,16]", "[3,3,16]")]
            let (a, c) = edits[Int.random(in: 0..<edits.count, using: &g)]
            let edited = Array(text.replacingOccurrences(of: a, with: c).utf8)
            let header = withUnsafeBytes(of: UInt64(edited.count).littleEndian) { Array($0) } + edited
            return (header + b[headerEnd...], "header edit \(a) -> \(c)")
        }
    }

    func testMutatedSnapshotsAreRefusedOrReadBack() throws {
        let f = try StoreFixture()
        var g = Generator(state: 0x6B76_7374_6F72_6531)
        let bases = try [DType.f16, .bf16, .f32].map { d in Array(try Data(contentsOf: URL(fileURLWithPath: try f.snapshotFile(name: "base-\(d.rawValue)", dtype: d)))) }
        var outcomes: [String: Int] = [:]
        for n in 0..<300 {
            let base = bases[n % bases.count]
            let (bytes, what) = Self.mutate(base, &g)
            let policy = Self.policies[Int.random(in: 0..<Self.policies.count, using: &g)]
            let path = f.directory + "/case-\(n).safetensors"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let record: EntryRecord
            do { record = try f.ingest(path, policy: policy).record } catch {
                XCTAssertFalse(error is StoreError && (error as! StoreError).isTransient, "case \(n) (\(what)): a bad input is not transient: \(error)")
                outcomes["refused", default: 0] += 1
                continue
            }
            outcomes["accepted", default: 0] += 1
            // Accepted: it must verify and fetch in the input's dtype, with finite values.
            XCTAssertNil(Verifier(root: f.root).check(record), "case \(n) (\(what), \(policy)): accepted but does not verify")
            let dtype = DType(rawValue: record.inputDType)!
            do {
                let fetched = try f.fetch(record.id, dtype: dtype).snapshot
                for i in 0..<fetched.layerCount {
                    let l = fetched.floatLayer(i)
                    XCTAssertTrue(l.keys.allSatisfy(\.isFinite) && l.values.allSatisfy(\.isFinite), "case \(n) (\(what), \(policy)): layer \(i) not finite")
                }
                // The same input ingested earlier keeps the policy it was stored with.
                if record.policy.hasPrefix("none") {
                    let input = try bytes.withUnsafeBytes { try Snapshot(bytes: $0) }
                    for i in 0..<input.layerCount {
                        XCTAssertEqual(Array(input.data(input.layers[i].key)), Array(fetched.data(fetched.layers[i].key)), "case \(n) (\(what)): exact policy changed layer \(i)")
                    }
                }
            } catch {
                XCTFail("case \(n) (\(what), \(policy)): accepted but fetch fails: \(error)")
            }
        }
        print("fuzz ingest outcomes: \(outcomes.sorted { $0.key < $1.key })")
        XCTAssertGreaterThan(outcomes["accepted", default: 0], 20, "the mutations must leave some inputs valid, or the read-back property is untested")
        XCTAssertGreaterThan(outcomes["refused", default: 0], 50)
    }

    func testDamagedBlobsNeverServeOtherBytes() throws {
        let f = try StoreFixture()
        var g = Generator(state: 0x626C_6F62_6461_6D67)
        var served = 0, refused = 0
        for (k, policy) in ["none", "lightkv+int8", "lightkv+int4g128m0t0"].enumerated() {
            let record = try f.ingest(try f.snapshotFile(name: "in-\(k)", seed: k), policy: policy).record
            let good = try f.fetch(record.id, dtype: .f32).bytes
            let path = f.root.blobs.location(record.blob)
            let intact = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
            for n in 0..<80 {
                var b = intact
                switch n % 3 {
                case 0: b[Int.random(in: 0..<b.count, using: &g)] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &g)
                case 1: b = Array(b[0..<Int.random(in: 0..<b.count, using: &g)])
                default:
                    let i = Int.random(in: 0..<b.count, using: &g)
                    b.replaceSubrange(i..<min(b.count, i + 64), with: repeatElement(0, count: min(b.count, i + 64) - i))
                }
                try Data(b).write(to: URL(fileURLWithPath: path))
                if let fetched = try? f.fetch(record.id, dtype: .f32).bytes {
                    XCTAssertEqual(fetched, good, "\(policy) case \(n): a damaged blob served other bytes")
                    served += 1
                } else {
                    refused += 1
                }
            }
            try Data(intact).write(to: URL(fileURLWithPath: path))
        }
        XCTAssertGreaterThan(refused, 200, "almost every damage is refused (\(served) served unchanged)")
    }
}
