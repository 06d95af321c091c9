import Foundation
import LightKV
@testable import Pipeline
import Store
import XCTest

/// A segmented entry's layer reaches a file as the two buffers it was decoded into, in one
/// gathered write per layer, and must land exactly where the joined bytes would.
final class DecodedLayerTests: XCTestCase {
    /// The segment's 3 entries, then the part's 2, in every head of keys and values, then
    /// positions and sizes: the layout a kvsnap layer has.
    func testPiecesLandWhereTheJoinedLayerWould() throws {
        let (heads, headDim, vHeadDim) = (2, 4, 3)
        func layer(_ n: Int, tag: UInt8) -> [UInt8] {
            let bytes = heads * n * (headDim + vHeadDim) * 2 + 8 * n
            return (0..<bytes).map { UInt8(truncatingIfNeeded: $0) &+ tag }
        }
        let first = layer(3, tag: 0), second = layer(2, tag: 128)
        let decoded = DecodedLayer(joining: first, of: 3, second, heads: heads, headDim: headDim, vHeadDim: vHeadDim, dtype: .f16)
        let joined = decoded.joined()
        XCTAssertEqual(joined.count, first.count + second.count)
        XCTAssertEqual(decoded.count, joined.count)
        // Head 0's keys: the segment's 3 rows (24 bytes), then the part's 2 (16 bytes).
        XCTAssertEqual(Array(joined[0..<24]), Array(first[0..<24]))
        XCTAssertEqual(Array(joined[24..<40]), Array(second[0..<16]))
        // Sizes come last: the segment's 3, then the part's 2.
        XCTAssertEqual(Array(joined.suffix(20)), Array(first.suffix(12)) + Array(second.suffix(8)))

        let directory = NSTemporaryDirectory() + "kvstore-decoded-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/out.safetensors"
        let sink = try OutputSink(path: path)
        XCTAssertTrue(sink.isPositional)
        let lead = [UInt8](repeating: 7, count: 5)
        try lead.withUnsafeBytes { try sink.write($0, at: 0) }
        try decoded.write(to: sink, at: 5)
        try sink.finish()
        XCTAssertEqual(try Array(Data(contentsOf: URL(fileURLWithPath: path))), lead + joined)
    }

    /// Empty pieces (a layer with no entries of its own) are skipped, the rest land in order.
    func testAGatheredWriteSkipsEmptyPieces() throws {
        let directory = NSTemporaryDirectory() + "kvstore-gather-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = try AtomicFile(finalPath: directory + "/f", tempPath: directory + "/f.tmp", startsWriteback: false)
        let a: [UInt8] = [1, 2, 3], b: [UInt8] = [], c: [UInt8] = Array(repeating: 9, count: 70_000)
        try a.withUnsafeBytes { pa in
            try b.withUnsafeBytes { pb in
                try c.withUnsafeBytes { pc in try file.write(gathering: [pa, pb, pc], at: 2) }
            }
        }
        try file.commit(durable: false)
        XCTAssertEqual(try Array(Data(contentsOf: URL(fileURLWithPath: directory + "/f"))), [0, 0] + a + c)
    }

    /// Layers written from several threads through one writer (one write at a time, at most
    /// one waiting) land each at its offset.
    func testLayersFromManyThreadsLandInPlace() throws {
        let directory = NSTemporaryDirectory() + "kvstore-writer-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/out"
        let sink = try OutputSink(path: path)
        let writer = PositionalWriter(sink)
        let sizes = (0..<48).map { 1000 + 37 * $0 }
        let offsets = sizes.reduce(into: [0]) { $0.append($0.last! + $1) }
        let failures = FirstFailure()
        DispatchQueue.concurrentPerform(iterations: sizes.count) { i in
            do { try writer.write(DecodedLayer(whole: [UInt8](repeating: UInt8(i), count: sizes[i])), at: offsets[i]) } catch { failures.record(error) }
        }
        XCTAssertNil(failures.error)
        try sink.finish()
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(bytes, sizes.indices.flatMap { [UInt8](repeating: UInt8($0), count: sizes[$0]) })
    }
}
