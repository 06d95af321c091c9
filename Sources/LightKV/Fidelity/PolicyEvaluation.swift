import Dispatch

/// A snapshot that cannot be evaluated.
public enum EvaluationError: Error, Equatable, CustomStringConvertible {
    /// Layer `layer` has neither `probe_query` nor at least two `prompt_query` tokens to hold out.
    case noProbes(layer: Int)
    case block(layer: Int, tensor: String, BlockError)
    /// The policy cannot do what it asks on this snapshot.
    case policy(PolicyError)

    public var description: String {
        switch self {
        case .noProbes(let l):
            "layers.\(l) has no probe_query and fewer than 2 prompt_query tokens to hold out: nothing to measure attention outputs with"
        case .block(let l, let t, let e): "layers.\(l).\(t): encoded block does not decode: \(e)"
        case .policy(let e): "\(e)"
        }
    }
}

/// Attention-output fidelity of one policy on one snapshot, per layer and overall: what
/// `kvstore eval` prints and `ingest` records.
///
/// Each layer is compressed and encoded by `SnapshotEncoder` exactly as ingest would, decoded
/// back to floats (so quantization error counts), and the outputs of the probe queries over it
/// are compared with those over the input layer (proportional attention on the input's own
/// sizes, which are all 1 for an uncompressed input).
///
///     let e = try PolicyEvaluation(snapshot: s, policy: try Policy(parsing: "lightkv"))
///     print(e.overall.proportional.relativeError)
public struct PolicyEvaluation: Sendable, Codable {
    /// One layer's figures.
    public struct Layer: Sendable, Codable, Equatable {
        public var layer: Int
        public var entries: Int
        public var visionEntries: Int
        /// Vision entries kept over the original vision token count.
        public var visionRetention: Double
        /// Outputs with the compressed entries' logits biased by `log(size)`.
        public var proportional: OutputAgreement
        /// Outputs with plain attention over the compressed entries.
        public var plain: OutputAgreement
        /// Encoded key+value block bytes (before the pack codec) and the input's.
        public var encodedBytes: Int
        public var inputBytes: Int
    }

    /// Means over layers.
    public struct Summary: Sendable, Codable, Equatable {
        public var visionRetention: Double
        public var proportional: OutputAgreement
        public var plain: OutputAgreement
        public var encodedBytes: Int
        public var inputBytes: Int
    }

    public var policy: String
    /// The average vision retention the policy asked for (nil: none asked; compare
    /// `overall.visionRetention`, what it kept).
    public var requestedRetention: Double?
    /// `probe_query`, or which prompt queries were held out as probes.
    public var probes: String
    public var layers: [Layer]
    public var overall: Summary
    /// The reduction's compression record.
    public var record: [String: String]
    /// Wall time of reducing and encoding every layer (float conversion included, fidelity
    /// measurement excluded): what this policy adds to an ingest.
    public var encodeSeconds: Double
    /// Of which inside the compressor itself.
    public var reduceSeconds: Double

    /// Evaluates `policy` on `snapshot`. Without `probe_query`, the last `holdOut` prompt
    /// queries (at most half of them) become probes and are withheld from the compressor.
    public init(snapshot: Snapshot, policy: Policy, holdOut: Int = 4) throws(EvaluationError) {
        var encoder = SnapshotEncoder(snapshot: snapshot, policy: policy)
        do { try encoder.checkRetention() } catch { throw .policy(error) }
        let hasProbes = snapshot.layers.allSatisfy { $0.probeQuery != nil }
        var withheld = 0
        if !hasProbes {
            let m = snapshot.layers.map { $0.promptQuery?.shape[1] ?? 0 }.min() ?? 0
            withheld = min(holdOut, m / 2)
            guard withheld > 0 else {
                throw .noProbes(layer: snapshot.layers.firstIndex { ($0.promptQuery?.shape[1] ?? 0) < 2 } ?? 0)
            }
            encoder.withheldPromptQueries = withheld
        }
        let layout = VisionLayout(spans: snapshot.metadata.spans, seqLen: snapshot.seqLen)
        var layers: [Layer] = []
        var encodeNanoseconds: UInt64 = 0
        for i in 0..<snapshot.layerCount {
            let input = snapshot.floatLayer(i)
            let started = DispatchTime.now().uptimeNanoseconds
            let packed = encoder.encode(i)
            encodeNanoseconds += DispatchTime.now().uptimeNanoseconds - started
            let probes: QueryBlock
            if hasProbes {
                probes = snapshot.queries(snapshot.layers[i].probeQuery)!
            } else {
                let q = snapshot.queries(snapshot.layers[i].promptQuery)!
                var tail: [Float] = []
                for h in 0..<q.heads {
                    let from = (h * q.count + q.count - withheld) * q.headDim
                    tail += q.values[from ..< (h + 1) * q.count * q.headDim]
                }
                probes = QueryBlock(heads: q.heads, count: withheld, headDim: q.headDim, values: tail)
            }
            let l = snapshot.layers[i]
            layers.append(try Layer(measuring: i, input: input, packed: packed, probes: probes, layout: layout,
                                    inputBytes: l.key.range.count + l.value.range.count))
        }
        self.policy = policy.name
        self.requestedRetention = policy.reduction.requestedRetention
        self.probes = hasProbes ? "probe_query" : "last \(withheld) prompt_query tokens, held out from compression"
        self.layers = layers
        self.overall = Summary(layers: layers)
        self.record = encoder.reductionRecord
        self.encodeSeconds = Double(encodeNanoseconds) / 1e9
        self.reduceSeconds = Double(encoder.reduceNanoseconds) / 1e9
    }

    /// A packed layer's blocks decoded back to floats (so quantization error counts).
    public static func decode(_ packed: PackedLayer, like input: KVLayer, layer: Int) throws(EvaluationError) -> KVLayer {
        let n = packed.count
        func block(_ b: EncodedBlock, dim: Int, name: String) throws(EvaluationError) -> [Float] {
            let shape = BlockShape(heads: input.kvHeads, count: n, dim: dim)
            var out = [Float](repeating: 0, count: max(shape.elements, 1))
            var failure: BlockError?
            b.bytes.withUnsafeBytes { raw in
                out.withUnsafeMutableBytes { dst in
                    do throws(BlockError) {
                        try BlockCodec.decode(raw, encoding: b.encoding, elements: shape.elements, shape: shape,
                                              to: .f32, into: dst.baseAddress!)
                    } catch { failure = error }
                }
            }
            if let failure { throw .block(layer: layer, tensor: name, failure) }
            return Array(out.prefix(shape.elements))
        }
        return KVLayer(kvHeads: input.kvHeads, headDim: input.headDim, vHeadDim: input.vHeadDim,
                       keys: try block(packed.keys, dim: input.headDim, name: "key"),
                       values: try block(packed.values, dim: input.vHeadDim, name: "value"),
                       positions: packed.positions, sizes: packed.sizes)
    }
}

extension PolicyEvaluation.Layer {
    /// Figures for layer `index` from its input and what was packed for it: ingest calls this
    /// inside its own encode loop to record the same figures `eval` prints.
    public init(measuring index: Int, input: KVLayer, packed: PackedLayer, probes: QueryBlock,
                layout: VisionLayout, inputBytes: Int) throws(EvaluationError) {
        try self.init(measuring: index, input: input, decoded: try PolicyEvaluation.decode(packed, like: input, layer: index),
                      encodedBytes: packed.keys.bytes.count + packed.values.bytes.count, probes: probes, layout: layout,
                      inputBytes: inputBytes)
    }

    /// The same from the stored layer already decoded (a segmented entry's is its segment's
    /// entries followed by its own) and the bytes its keys and values take encoded.
    public init(measuring index: Int, input: KVLayer, decoded: KVLayer, encodedBytes: Int, probes: QueryBlock,
                layout: VisionLayout, inputBytes: Int) throws(EvaluationError) {
        let reference = AttentionOutput.compute(queries: probes, layer: input, proportional: true)
        let rows = probes.heads * probes.count
        let outputs = AttentionOutput.both(queries: probes, layer: decoded)
        let prop = OutputAgreement(reference: reference, approximate: outputs.proportional, rows: rows, dim: input.vHeadDim)
        let plain = OutputAgreement(reference: reference, approximate: outputs.plain, rows: rows, dim: input.vHeadDim)
        let vision = decoded.positions.reduce(0) { $0 + (layout.isVision($1) ? 1 : 0) }
        self.init(layer: index, entries: decoded.count, visionEntries: vision,
                  visionRetention: layout.visionTokenCount == 0 ? 1 : Double(vision) / Double(layout.visionTokenCount),
                  proportional: prop, plain: plain,
                  encodedBytes: encodedBytes, inputBytes: inputBytes)
    }
}

extension PolicyEvaluation.Summary {
    /// Means over `layers` (byte counts summed).
    public init(layers: [PolicyEvaluation.Layer]) {
        let n = Double(max(layers.count, 1))
        func mean(_ f: (PolicyEvaluation.Layer) -> Double) -> Double { layers.reduce(0) { $0 + f($1) } / n }
        self.init(visionRetention: mean(\.visionRetention),
                  proportional: OutputAgreement(cosine: mean(\.proportional.cosine), relativeError: mean(\.proportional.relativeError)),
                  plain: OutputAgreement(cosine: mean(\.plain.cosine), relativeError: mean(\.plain.relativeError)),
                  encodedBytes: layers.reduce(0) { $0 + $1.encodedBytes }, inputBytes: layers.reduce(0) { $0 + $1.inputBytes })
    }
}
