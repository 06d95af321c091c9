import Foundation
import LightKV

extension Scratch {
    /// 4 system tokens, a 4×4 image (or the same 16 entries declared as another `grid`),
    /// `prompt` prompt tokens; ids 1000+position in the prefix and `question`-dependent ids in
    /// the prompt, as a processor would give them.
    func question(_ name: String, question: Int, prompt: Int = 6, seed: Int = 0,
                  ids: Bool = true, dtype: DType = .f16, grid: (rows: Int, cols: Int) = (4, 4),
                  source: String? = "sha256:" + String(repeating: "ab", count: 32)) throws -> String {
        let n = 20 + prompt
        precondition(grid.rows * grid.cols == 16, "the image holds 16 entries")
        let spans: [Span] = [.text(0, 4, role: .system),
                             .image(4, rows: grid.rows, cols: grid.cols, source: source),
                             .text(20, n, role: .prompt)]
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "test/model", spans: spans, key: "q\(question)", nextPosition: n))
        for i in 0..<2 {
            // The prefix's keys and values are the same for every question (causal attention).
            var keys = (0..<(2 * n * 16)).map { Float(sin(Double($0 % (n * 16) + 7 * i + seed))) }
            var values = (0..<(2 * n * 16)).map { Float(cos(Double($0 % (n * 16) + 3 * i + seed))) }
            for h in 0..<2 { for t in 20..<n { for d in 0..<16 {
                keys[(h * n + t) * 16 + d] = Float(question) / 10 + Float(d) / 100
                values[(h * n + t) * 16 + d] = -Float(question) / 10
            } } }
            b.add("layers.\(i).key", dtype: dtype, shape: [2, n, 16], floats: keys)
            b.add("layers.\(i).value", dtype: dtype, shape: [2, n, 16], floats: values)
            b.add("layers.\(i).prompt_query", dtype: dtype, shape: [4, 2, 16], floats: (0..<128).map { Float(sin(Double($0 * (question + 2)))) })
        }
        let tokens: [Int64] = (0..<n).map { (t: Int) -> Int64 in t < 20 ? Int64(1000 + t) : Int64(5000 + 10 * question + t) }
        if ids { b.addInputIDs(tokens) }
        let file = path + "/" + name
        try Data(b.bytes()).write(to: URL(fileURLWithPath: file))
        return file
    }
}
