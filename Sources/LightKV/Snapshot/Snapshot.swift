/// A validated kvsnap file over bytes the caller keeps alive (typically a memory map).
///
/// Nothing is copied: each layer's tensors are views into the file, so a 1 GB snapshot costs
/// one mapping, and callers convert or compress one layer at a time.
public struct Snapshot: @unchecked Sendable {
    /// The tensors of one layer, as views into the file.
    public struct Layer: @unchecked Sendable {
        public var key: TensorInfo
        public var value: TensorInfo
        public var promptQuery: TensorInfo?
        public var probeQuery: TensorInfo?
        public var positions: TensorInfo?
        public var sizes: TensorInfo?
        /// Entries held in this layer.
        public var count: Int { key.shape[1] }
    }

    public let bytes: UnsafeRawBufferPointer
    public let metadata: SnapshotMetadata
    public let layers: [Layer]
    public let dtype: DType
    public let kvHeads: Int
    public let headDim: Int
    public let vHeadDim: Int
    /// Query heads of `prompt_query`/`probe_query`, when present.
    public let qHeads: Int?
    /// Original sequence length (before any merging).
    public let seqLen: Int
    /// True when some layer carries `positions`/`sizes` (an already-compressed input).
    public let isCompressed: Bool
    /// The token ids of the cached positions (`input_ids`, I32 or I64), when the producer wrote them.
    public let inputIDs: TensorInfo?

    /// The name of the token-ids tensor (KVSNAP.md).
    public static let inputIDsName = "input_ids"
    /// The most entries (`seq_len`) and the largest head count or width a stored entry holds
    /// (docs/FORMAT.md, the pack header's bounds).
    public static let maxSeqLen = 1 << 24
    public static let maxDimension = 65536

    public var layerCount: Int { layers.count }

    /// Bytes of the largest layer's keys and values as stored in the input.
    public var largestLayerBytes: Int { layers.map { $0.key.range.count + $0.value.range.count }.max() ?? 0 }

    /// Parses and validates a whole kvsnap file: structure, shapes, spans, and (unless
    /// `checkFinite` is false) that every float is finite.
    public init(bytes: UnsafeRawBufferPointer, checkFinite: Bool = true) throws(KVSnapError) {
        self.bytes = bytes
        let header = try SafetensorsHeader(parsing: bytes)
        var metadata = try SnapshotMetadata(parsing: header.metadata)
        let t = header.tensors

        var layerCount = 0
        while t["layers.\(layerCount).key"] != nil || t["layers.\(layerCount).value"] != nil { layerCount += 1 }
        guard layerCount > 0 else { throw .missingTensor("layers.0.key") }
        for name in t.keys where name != Self.inputIDsName {
            let parts = name.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count >= 3, parts[0] == "layers", let i = Int(parts[1]), i >= 0, String(i) == parts[1] else {
                throw .badTensor(name: name, problem: "not a kvsnap tensor name (expected input_ids or layers.{i}.key, value, prompt_query, probe_query, positions or sizes)")
            }
            guard i < layerCount else { throw .missingTensor("layers.\(layerCount).key (layer \(i) exists, so every layer below it must too)") }
            let suffix = parts.dropFirst(2).joined(separator: ".")
            guard ["key", "value", "prompt_query", "probe_query", "positions", "sizes"].contains(suffix) else {
                throw .badTensor(name: name, problem: "unknown tensor kind \"\(suffix)\"")
            }
        }

        func need(_ name: String) throws(KVSnapError) -> TensorInfo {
            guard let info = t[name] else { throw .missingTensor(name) }
            return info
        }
        let first = try need("layers.0.key")
        let dtype = first.dtype
        guard dtype.isFloat else { throw .badTensor(name: first.name, problem: "dtype I32 is not a float type") }
        guard first.shape.count == 3 else { throw .badTensor(name: first.name, problem: "shape \(first.shape) is not [kv_heads, seq_len, head_dim]") }
        let kvHeads = first.shape[0], headDim = first.shape[2]
        guard kvHeads > 0, headDim > 0 else { throw .badTensor(name: first.name, problem: "shape \(first.shape) has an empty dimension") }
        let firstValue = try need("layers.0.value")
        guard firstValue.shape.count == 3 else { throw .badTensor(name: firstValue.name, problem: "shape \(firstValue.shape) is not [kv_heads, seq_len, v_head_dim]") }
        let vHeadDim = firstValue.shape[2]
        // The limits a stored entry can hold (docs/FORMAT.md): checked here, against the input,
        // rather than found by the packer in a file of its own.
        for (name, what, n) in [(first.name, "kv_heads", kvHeads), (first.name, "head_dim", headDim), (firstValue.name, "v_head_dim", vHeadDim)]
        where !(1...Self.maxDimension).contains(n) {
            throw .badTensor(name: name, problem: "\(what) \(n) is outside 1...\(Self.maxDimension)")
        }
        guard first.shape[1] <= Self.maxSeqLen else {
            throw .badTensor(name: first.name, problem: "\(first.shape[1]) entries, more than a stored entry holds (\(Self.maxSeqLen))")
        }

        var layers: [Layer] = []
        var qHeads: Int?
        var compressed = false
        for i in 0..<layerCount {
            let key = try need("layers.\(i).key"), value = try need("layers.\(i).value")
            for info in [key, value] where info.dtype != dtype {
                throw .shapeMismatch("\(info.name) is \(info.dtype.rawValue) but layers.0.key is \(dtype.rawValue)")
            }
            guard key.shape.count == 3, key.shape[0] == kvHeads, key.shape[2] == headDim else {
                throw .shapeMismatch("\(key.name) has shape \(key.shape), expected [\(kvHeads), n, \(headDim)] like layers.0.key")
            }
            guard value.shape == [kvHeads, key.shape[1], vHeadDim] else {
                throw .shapeMismatch("\(value.name) has shape \(value.shape), expected [\(kvHeads), \(key.shape[1]), \(vHeadDim)]")
            }
            var layer = Layer(key: key, value: value)
            for (kind, path) in [("prompt_query", \Layer.promptQuery), ("probe_query", \Layer.probeQuery)] {
                guard let q = t["layers.\(i).\(kind)"] else { continue }
                guard q.dtype == dtype else { throw .shapeMismatch("\(q.name) is \(q.dtype.rawValue) but keys are \(dtype.rawValue)") }
                guard q.shape.count == 3, q.shape[2] == headDim, q.shape[0] > 0, q.shape[0] % kvHeads == 0 else {
                    throw .shapeMismatch("\(q.name) has shape \(q.shape), expected [q_heads, m, \(headDim)] with q_heads a multiple of \(kvHeads)")
                }
                if let h = qHeads, h != q.shape[0] { throw .shapeMismatch("\(q.name) has \(q.shape[0]) query heads, other layers \(h)") }
                qHeads = q.shape[0]
                layer[keyPath: path] = q
            }
            let positions = t["layers.\(i).positions"], sizes = t["layers.\(i).sizes"]
            if positions != nil || sizes != nil {
                guard let p = positions, let s = sizes else {
                    throw .missingTensor("layers.\(i).\(positions == nil ? "positions" : "sizes") (the other is present)")
                }
                for info in [p, s] where info.dtype != .i32 || info.shape != [key.shape[1]] {
                    throw .shapeMismatch("\(info.name) is \(info.dtype.rawValue) \(info.shape), expected I32 [\(key.shape[1])]")
                }
                layer.positions = p; layer.sizes = s
                compressed = true
            }
            layers.append(layer)
        }

        let seqLen: Int
        if compressed {
            guard let n = metadata.seqLen else {
                throw .badMetadata(key: SnapshotMetadata.seqLenKey, problem: "missing, but the file carries positions/sizes so its layers are already compressed")
            }
            guard n <= Self.maxSeqLen else {
                throw .badMetadata(key: SnapshotMetadata.seqLenKey, problem: "\(n) is more than a stored entry holds (\(Self.maxSeqLen))")
            }
            seqLen = n
            // A layer without positions holds every position, in order.
            for l in layers where l.positions == nil && l.count != seqLen {
                throw .shapeMismatch("\(l.key.name) holds \(l.count) entries and has no positions, so it must hold all \(seqLen) (kvsnap.seq_len)")
            }
        } else {
            seqLen = metadata.seqLen ?? first.shape[1]
            for l in layers where l.count != seqLen {
                throw .shapeMismatch("\(l.key.name) holds \(l.count) entries but layers.0.key holds \(seqLen) and no positions are given")
            }
            metadata.seqLen = nil
        }
        try metadata.spans.validate(seqLen: seqLen)
        if let ids = t[Self.inputIDsName] {
            guard ids.dtype == .i32 || ids.dtype == .i64 else {
                throw .badTensor(name: ids.name, problem: "dtype \(ids.dtype.rawValue) is not I32 or I64")
            }
            guard ids.shape == [seqLen] else {
                throw .shapeMismatch("\(ids.name) has shape \(ids.shape), expected [\(seqLen)] (one id per cached position)")
            }
        }
        inputIDs = t[Self.inputIDsName]

        self.metadata = metadata
        self.layers = layers
        self.dtype = dtype
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.vHeadDim = vHeadDim
        self.qHeads = qHeads
        self.seqLen = seqLen
        self.isCompressed = compressed

        for l in layers {
            if let p = l.positions, let s = l.sizes { try Self.checkMerges(self.int32s(p), self.int32s(s), seqLen: seqLen, name: p.name) }
        }
        if checkFinite {
            for l in layers {
                for info in [l.key, l.value, l.promptQuery, l.probeQuery].compactMap({ $0 })
                where !Conversion.allFinite(data(info), dtype: dtype) {
                    throw .nonFinite(tensor: info.name)
                }
            }
        }
    }

    /// The raw bytes of a tensor.
    public func data(_ info: TensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[info.range])
    }

    /// The token ids, widened to Int64; nil when the file has none.
    public func tokenIDs() -> [Int64]? {
        guard let info = inputIDs else { return nil }
        let d = data(info)
        return (0..<info.elementCount).map { i in
            info.dtype == .i64 ? Int64(littleEndian: d.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
                               : Int64(Int32(littleEndian: d.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)))
        }
    }

    public func int32s(_ info: TensorInfo) -> [Int32] {
        let d = data(info)
        return (0..<info.elementCount).map { Int32(littleEndian: d.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
    }

    /// Original positions of layer `i`'s entries (0..<seqLen when uncompressed).
    public func positions(layer i: Int) -> [Int32] {
        layers[i].positions.map(int32s) ?? (0..<Int32(seqLen)).map { $0 }
    }

    /// Members each entry of layer `i` stands for (all 1 when uncompressed).
    public func sizes(layer i: Int) -> [Int32] {
        layers[i].sizes.map(int32s) ?? [Int32](repeating: 1, count: seqLen)
    }

    /// The entries of layer `i` at positions `window` of an uncompressed snapshot (entry `j`
    /// stands at position `j`), decoded to floats: only those rows are converted.
    public func floatLayer(_ i: Int, window: Range<Int>, keysOnly: Bool = false) -> KVLayer {
        let l = layers[i], n = seqLen, w = dtype.size
        // Each head's window converted where it lands: no per-head array appended (a copy).
        func rows(_ info: TensorInfo, dim: Int) -> [Float] {
            let d = data(info), piece = window.count * dim
            return [Float](unsafeUninitializedCapacity: kvHeads * piece) { out, initialized in
                if piece > 0, let source = d.baseAddress {
                    for h in 0..<kvHeads {
                        Conversion.toFloat(source + (h * n + window.lowerBound) * dim * w, dtype: dtype, count: piece,
                                           into: out.baseAddress! + h * piece)
                    }
                }
                initialized = kvHeads * piece
            }
        }
        return KVLayer(kvHeads: kvHeads, headDim: headDim, vHeadDim: keysOnly ? 0 : vHeadDim, keys: rows(l.key, dim: headDim),
                       values: keysOnly ? [] : rows(l.value, dim: vHeadDim), positions: window.map { Int32($0) },
                       sizes: [Int32](repeating: 1, count: window.count))
    }

    /// Layer `i` decoded to floats, ready for a compressor; `keysOnly`: without its values
    /// (`vHeadDim` 0), which is all a compressor's survey reads.
    public func floatLayer(_ i: Int, keysOnly: Bool = false) -> KVLayer {
        let l = layers[i]
        return KVLayer(kvHeads: kvHeads, headDim: headDim, vHeadDim: keysOnly ? 0 : vHeadDim,
                       keys: Conversion.floats(data(l.key), dtype: dtype),
                       values: keysOnly ? [] : Conversion.floats(data(l.value), dtype: dtype),
                       positions: positions(layer: i), sizes: sizes(layer: i))
    }

    /// A query tensor decoded to floats, with its `[q_heads, m, head_dim]` shape.
    public func queries(_ info: TensorInfo?) -> QueryBlock? {
        guard let info else { return nil }
        return QueryBlock(heads: info.shape[0], count: info.shape[1], headDim: info.shape[2],
                          values: Conversion.floats(data(info), dtype: dtype))
    }

    private static func checkMerges(_ p: [Int32], _ s: [Int32], seqLen: Int, name: String) throws(KVSnapError) {
        var previous: Int32 = -1
        var total = 0
        for (pos, size) in zip(p, s) {
            guard pos > previous, Int(pos) < seqLen else {
                throw .badTensor(name: name, problem: "position \(pos) is not ascending within [0, \(seqLen))")
            }
            guard size >= 1 else { throw .badTensor(name: name, problem: "size \(size) at position \(pos) is below 1") }
            previous = pos
            total += Int(size)
        }
        guard total <= seqLen else { throw .badTensor(name: name, problem: "sizes sum to \(total), more than seq_len \(seqLen)") }
    }
}
