import LightKV

/// Smallest snapshots that show a behaviour: 4 system tokens, a 4×4 image, 6 prompt tokens.
enum Fixtures {
    static let spans: [Span] = [
        .text(0, 4, role: .system), .image(4, rows: 4, cols: 4, source: "sha256:" + String(repeating: "ab", count: 32)),
        .text(20, 26, role: .prompt),
    ]
    static let seqLen = 26

    /// Deterministic multiples of 1/64 in [-2, 2): every dtype, bf16 included, holds them exactly.
    static func values(_ count: Int, seed: Int) -> [Float] {
        var state = UInt64(truncatingIfNeeded: seed) &* 0x9E37_79B9_7F4A_7C15 &+ 1
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int(state >> 40) % 256) / 64 - 2
        }
    }

    static func builder(layers: Int = 3, kvHeads: Int = 2, headDim: Int = 16, dtype: DType = .f16,
                        spans: [Span] = spans, seqLen: Int = seqLen, promptQuery: Bool = true) -> KVSnapBuilder {
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "test/model", spans: spans, key: "fixture"))
        for i in 0..<layers {
            b.add("layers.\(i).key", dtype: dtype, shape: [kvHeads, seqLen, headDim], floats: values(kvHeads * seqLen * headDim, seed: 2 * i))
            b.add("layers.\(i).value", dtype: dtype, shape: [kvHeads, seqLen, headDim], floats: values(kvHeads * seqLen * headDim, seed: 2 * i + 1))
            if promptQuery {
                b.add("layers.\(i).prompt_query", dtype: dtype, shape: [2 * kvHeads, 3, headDim], floats: values(2 * kvHeads * 3 * headDim, seed: 100 + i))
            }
        }
        return b
    }

    static func snapshotBytes(dtype: DType = .f16) -> [UInt8] { builder(dtype: dtype).bytes() }
}
