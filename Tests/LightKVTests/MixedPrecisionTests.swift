import XCTest
@testable import LightKV

final class MixedPrecisionTests: XCTestCase {
    func testTheMostAttendedVisionEntriesStayExact() throws {
        // One head; the prompt query points along +x; vision entries 1 and 3 lie far along +x.
        let spans: [Span] = [.image(0, rows: 2, cols: 3), .text(6, 7, role: .prompt)]
        let keys: [Float] = [0.1, 0, 3, 0, -1, 0, 4, 0, 0, 1, 0.2, 0, 0, 0]
        let layer = KVLayer(kvHeads: 1, headDim: 2, vHeadDim: 1, keys: keys, values: [0, 1, 2, 3, 4, 5, 6],
                            positions: [0, 1, 2, 3, 4, 5, 6], sizes: [1, 1, 1, 1, 1, 1, 1])
        let context = LayerContext(index: 0, layerCount: 1, spans: spans, seqLen: 7,
                                   promptQuery: QueryBlock(heads: 1, count: 1, headDim: 2, values: [1, 0]))
        let q = try XCTUnwrap(try IntegerQuantization(token: "int2s0m0t0a34"))
        XCTAssertEqual(q.name, "int2g32s0m0t0a34")
        // 34% of 6 vision entries is 2: entries 3 and 1.
        XCTAssertEqual(q.keep.keptEntries(layer: layer, context: context), [1, 3])
        let standard = try XCTUnwrap(try IntegerQuantization(token: "int4s0a34"))
        XCTAssertEqual(standard.keep.keptEntries(layer: layer, context: context), [1, 3, 6], "text kept too")
        XCTAssertThrowsError(try IntegerQuantization(token: "int4a101"))
    }
}
