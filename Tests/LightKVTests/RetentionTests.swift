import XCTest
@testable import LightKV

/// Every reduction keeps the average vision retention it asks for, on any depth, or refuses.
final class RetentionTests: XCTestCase {
    static let methods = ["lightkv", "lightkv%:budget=adaptive", "tome", "uniform", "random", "prompt-topk", "prompt-topk%:profile=flat",
                          "prompt-topk%:profile=adaptive", "aircache", "airmerge"]

    func token(_ method: String, _ percent: Int) -> String {
        method.contains("%") ? method.replacingOccurrences(of: "%", with: String(percent)) : "\(method)\(percent)"
    }

    /// Kept vision entries over vision tokens, averaged over layers, on a 16×16 image.
    func keptRetention(_ token: String, layers: Int) throws -> Double {
        var f = Fixture.image(rows: 16, cols: 16)
        f.kvHeads = 1; f.qHeads = 2; f.headDim = 4; f.vHeadDim = 2; f.layerCount = layers
        var c = try published(token).makeCompressor()
        let layout = VisionLayout(spans: f.spans, seqLen: f.seqLen)
        let kept = f.run(&c).map { Double($0.1.positions.filter(layout.isVision).count) / 256 }
        return kept.reduce(0, +) / Double(layers)
    }

    func testEveryMethodKeepsItsRequestedRetentionOnSixTwentyEightAndThirtyTwoLayers() throws {
        for layers in [6, 28, 32] {
            for method in Self.methods {
                for percent in [5, 10, 20, 35, 55, 100] {
                    let t = token(method, percent)
                    let r = try keptRetention(t, layers: layers)
                    XCTAssertEqual(r, Double(percent) / 100, accuracy: ReductionSpec.retentionTolerance,
                                   "\(t) on \(layers) layers kept \(r)")
                    let predicted = try spec(t).predictedRetention(layerCount: layers, spans: Fixture.image(rows: 16, cols: 16).spans)
                    XCTAssertEqual(r, predicted, accuracy: 0.002, "\(t) on \(layers) layers: kept \(r), predicted \(predicted)")
                }
            }
        }
    }

    func testLightKVTenOnSixLayersNoLongerKeepsWhatTwentyKeeps() throws {
        let ten = try keptRetention("lightkv10", layers: 6), twenty = try keptRetention("lightkv20", layers: 6)
        XCTAssertEqual(ten, 0.10, accuracy: 0.01)
        XCTAssertEqual(twenty, 0.20, accuracy: 0.01)
    }

    func testUnreachableRetentionIsRefusedNamingWhy() throws {
        // 2% of one 8×8 image is 1.3 entries per layer; lightkv keeps at least one per frame
        // but its stages cannot reach 2% on a single layer (a stage keeps at least 5%).
        let spans: [Span] = [.text(0, 2, role: .system), .image(2, rows: 8, cols: 8), .text(66, 70, role: .prompt)]
        XCTAssertThrowsError(try spec("lightkv2").checkRetention(layerCount: 1, spans: spans)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("lightkv2") && text.contains("64 vision tokens") && text.contains("1 layer"), text)
        }
        // A video of 8 frames of 4×4 cannot keep 2%: one entry per frame is 6.25%.
        let video: [Span] = [.text(0, 2, role: .system), .video(2, rows: 4, cols: 4, frames: 8), .text(130, 134, role: .prompt)]
        XCTAssertThrowsError(try spec("aircache2").checkRetention(layerCount: 28, spans: video))
        XCTAssertNoThrow(try spec("aircache10").checkRetention(layerCount: 28, spans: video))
        XCTAssertNoThrow(try spec("lightkv").checkRetention(layerCount: 1, spans: spans))
    }
}
