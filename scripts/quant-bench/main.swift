// Quantize/dequantize throughput and zstd-layout experiment for the int8/int4/int2 blocks.
// Built and run by scripts/quant-bench.sh (release LightKV, -target-cpu haswell).
import Foundation
import LightKV

struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func gaussian(_ rng: inout SplitMix) -> Float {
    let u = Float.random(in: Float.ulpOfOne..<1, using: &rng), v = Float.random(in: 0..<1, using: &rng)
    return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
}

/// KV-like synthetic layer: keys = per-channel offset (a few outlier channels) + RoPE-like
/// rotation + noise; values = noise with per-token magnitude. Rounded through F16 like a snapshot.
func synthLayer(heads: Int, count: Int, dim: Int, seed: UInt64) -> KVLayer {
    var rng = SplitMix(state: seed)
    var keys = [Float](repeating: 0, count: heads * count * dim), values = keys
    for h in 0..<heads {
        let offset = (0..<dim).map { _ in gaussian(&rng) * 0.5 }
        let amp = (0..<dim).map { d in (d % 37 == 3 ? 12 : 1) * (0.5 + abs(gaussian(&rng))) }
        let phase = (0..<dim).map { _ in Float.random(in: 0..<(2 * .pi), using: &rng) }
        for t in 0..<count {
            let tokenScale = 0.5 + abs(gaussian(&rng)) * 0.5
            for d in 0..<dim {
                let omega = pow(10000, -Float(2 * (d / 2)) / Float(dim))
                let i = (h * count + t) * dim + d
                keys[i] = Float(Float16(offset[d] + amp[d] * cos(omega * Float(t) + phase[d]) + 0.3 * gaussian(&rng)))
                values[i] = Float(Float16(gaussian(&rng) * tokenScale))
            }
        }
    }
    return KVLayer(kvHeads: heads, headDim: dim, vHeadDim: dim, keys: keys, values: values,
                   positions: (0..<Int32(count)).map { $0 }, sizes: [Int32](repeating: 1, count: count))
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

// Header fields of a block (docs/FORMAT.md).
func u32(_ b: [UInt8], _ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 | Int(b[o + 2]) << 16 | Int(b[o + 3]) << 24 }

/// The block with its codes section rewritten in another order, for the zstd experiment.
func relayout(_ block: [UInt8], _ variant: String) -> [UInt8] {
    let bits = Int(block[4]), channelAxis = block[5] == 0, g = u32(block, 8), heads = u32(block, 12)
    let count = u32(block, 16), dim = u32(block, 20), kept = u32(block, 24), n = count - kept
    let rowBytes = (dim * bits + 7) / 8
    let codesOffset = block.count - heads * n * rowBytes
    // Unpack to one code per byte, [head][row][channel].
    var codes = [UInt8](repeating: 0, count: heads * n * dim)
    for r in 0..<(heads * n) { for d in 0..<dim {
        let bit = d * bits, byte = block[codesOffset + r * rowBytes + bit / 8]
        codes[r * dim + d] = (byte >> UInt8(bit % 8)) & UInt8((1 << bits) - 1)
    }}
    var order = codes
    switch variant {
    case "channel-major":   // keys: inside each token group, channel after channel
        guard channelAxis else { return block }
        var o = 0
        for h in 0..<heads { for t0 in stride(from: 0, to: n, by: g) { for d in 0..<dim { for r in t0..<min(t0 + g, n) {
            order[o] = codes[(h * n + r) * dim + d]; o += 1
        }}}}
    case "nibble-planes":   // int8: all high nibbles, then all low nibbles, each packed two a byte
        guard bits == 8 else { return block }
        let half = (codes.count + 1) / 2
        var out = Array(block[..<codesOffset]) + [UInt8](repeating: 0, count: 2 * half)
        for (i, c) in codes.enumerated() {
            out[codesOffset + i / 2] |= (c >> 4) << UInt8(4 * (i % 2))
            out[codesOffset + half + i / 2] |= (c & 0xF) << UInt8(4 * (i % 2))
        }
        return out
    default: return block
    }
    var out = Array(block[..<codesOffset]) + [UInt8](repeating: 0, count: (order.count * bits + 7) / 8)
    for (i, c) in order.enumerated() { out[codesOffset + i * bits / 8] |= c << UInt8(i * bits % 8) }
    return out
}

let args = CommandLine.arguments
let layers = args.count > 1 ? Int(args[1])! : 32
let dumpDir = args.count > 2 ? args[2] : "/tmp/quant-bench"
let heads = 32, count = 636, dim = 128
let spans = [Span.text(0, 35), Span.image(35, rows: 24, cols: 24), Span.text(611, 636, role: .prompt)]
let context = LayerContext(index: 0, layerCount: layers, spans: spans, seqLen: count, promptQuery: nil)
let synth = (0..<4).map { synthLayer(heads: heads, count: count, dim: dim, seed: UInt64($0 + 1)) }
let f16Bytes = Double(layers * 2 * heads * count * dim * 2)
print("shape [\(heads), \(count), \(dim)] x \(layers) layers, keys+values = \(Int(f16Bytes) / 1_000_000) MB of F16")
try? FileManager.default.createDirectory(atPath: dumpDir, withIntermediateDirectories: true)

for token in ["int8", "int4", "int2", "int8s0m0t0", "int4s0m0t0", "int4g64", "int4g128"] {
    guard case .integer(let q)? = try QuantSpec(token: token) else { fatalError(token) }
    let spec = QuantSpec.integer(q)
    // Best of 3: the machine is shared and noisy.
    var blocks: [(EncodedBlock, EncodedBlock)] = []
    var encode = Double.infinity
    for _ in 0..<3 {
        blocks = []
        blocks.reserveCapacity(layers)
        encode = min(encode, seconds { for i in 0..<layers { blocks.append(spec.encode(synth[i % 4], context: context)) } })
    }
    let shape = BlockShape(heads: heads, count: count, dim: dim)
    // Decode every block to its own place in one output as large as the whole cache (as fetch
    // does), so the writes go to memory rather than stay in cache; best of 3 (pages faulted in).
    func decodeAll(_ dtype: DType) throws -> Double {
        var out = [UInt8](repeating: 0, count: 2 * blocks.count * shape.elements * dtype.size)
        return try out.withUnsafeMutableBytes { o in
            try (0..<3).map { _ in
                try seconds {
                    for (i, (k, v)) in blocks.enumerated() {
                        for (j, b) in [k, v].enumerated() {
                            let at = o.baseAddress! + (2 * i + j) * shape.elements * dtype.size
                            try b.bytes.withUnsafeBytes { try BlockCodec.decode($0, encoding: b.encoding, elements: shape.elements, shape: shape, to: dtype, into: at) }
                        }
                    }
                }
            }.min()!
        }
    }
    let decode = try decodeAll(.f16)
    var other = ""
    if spec.name == "int8g32" || spec.name == "int4g32" {
        for dtype in [DType.bf16, .f32] { other += String(format: "   ->%@ %.3f s", dtype.rawValue, try decodeAll(dtype)) }
    }
    let stored = blocks.reduce(0) { $0 + $1.0.bytes.count + $1.1.bytes.count }
    print(String(format: "%-11@ quantize %.3f s = %.2f GB/s   dequantize->F16 %.3f s = %.2f GB/s   stored %.1f%% of F16%@",
                 spec.name as NSString, encode, f16Bytes / encode / 1e9, decode, f16Bytes / decode / 1e9, 100 * Double(stored) / f16Bytes, other as NSString))
    // First 4 layers' blocks, in each layout, for zstd.
    for variant in ["row-major", "channel-major", "nibble-planes"] {
        for (kind, pick) in [("keys", 0), ("values", 1)] {
            var bytes: [UInt8] = []
            for (k, v) in blocks.prefix(4) { bytes += relayout(pick == 0 ? k.bytes : v.bytes, variant) }
            _ = FileManager.default.createFile(atPath: "\(dumpDir)/\(spec.name).\(kind).\(variant).bin", contents: Data(bytes))
        }
    }
}
// F16 baselines: byte planes (what `f16` stores) and the plain F16 bytes.
var planes: [UInt8] = [], plain: [UInt8] = []
for layer in synth {
    for x in [layer.keys, layer.values] {
        planes += BlockCodec.encode(x, dtype: .f16).bytes
        plain += x.map { Float16($0) }.withUnsafeBytes { Array($0) }
    }
}
_ = FileManager.default.createFile(atPath: "\(dumpDir)/f16.planes.bin", contents: Data(planes))
_ = FileManager.default.createFile(atPath: "\(dumpDir)/f16.plain.bin", contents: Data(plain))
