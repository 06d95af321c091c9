import LightKV

/// One layer of a fetch as the output file lays it out (keys, values, positions, sizes), held
/// as the buffers it was decoded into: a segmented entry's layer is its segment's entries
/// followed by its own in every tensor, so each head's rows alternate between two buffers.
/// A positional sink takes the pieces as they are (one gathered write); a stream gets them
/// joined.
struct DecodedLayer {
    private let buffers: [[UInt8]]
    /// In output order: which buffer, which bytes of it.
    private let pieces: [(buffer: Int, range: Range<Int>)]

    /// A layer decoded into one buffer.
    init(whole layer: [UInt8]) {
        buffers = [layer]
        pieces = [(0, 0..<layer.count)]
    }

    /// A segmented entry's layer: the `n` entries of `first` (the segment), then those of
    /// `second` (the entry's own part), in every head of keys and values, positions and sizes.
    init(joining first: [UInt8], of n: Int, _ second: [UInt8], heads: Int, headDim: Int, vHeadDim: Int, dtype: DType) {
        let perEntry = heads * (headDim + vHeadDim) * dtype.size + 8
        let m = second.count / perEntry
        var pieces: [(buffer: Int, range: Range<Int>)] = []
        var (a, b) = (0, 0)
        for dim in [headDim, vHeadDim] {
            let rowA = n * dim * dtype.size, rowB = m * dim * dtype.size
            for h in 0..<heads {
                pieces.append((0, (a + h * rowA)..<(a + (h + 1) * rowA)))
                pieces.append((1, (b + h * rowB)..<(b + (h + 1) * rowB)))
            }
            a += heads * rowA; b += heads * rowB
        }
        pieces += [(0, a..<(a + 4 * n)), (1, b..<(b + 4 * m))]  // positions
        pieces += [(0, (a + 4 * n)..<first.count), (1, (b + 4 * m)..<second.count)]  // sizes
        buffers = [first, second]
        self.pieces = pieces
    }

    var count: Int { pieces.reduce(0) { $0 + $1.range.count } }

    /// The layer in one buffer.
    func joined() -> [UInt8] {
        if pieces.count == 1 { return buffers[pieces[0].buffer] }
        var out = [UInt8](); out.reserveCapacity(count)
        for p in pieces { out += buffers[p.buffer][p.range] }
        return out
    }

    /// Writes the layer at `offset` of a positional sink, in one gathered write.
    func write(to sink: some FetchSink, at offset: Int) throws {
        try withPieces { try sink.write(gathering: $0, at: offset) }
    }

    private func withPieces(_ body: ([UnsafeRawBufferPointer]) throws -> Void) throws {
        try buffers[0].withUnsafeBytes { a in
            try (buffers.count > 1 ? buffers[1] : []).withUnsafeBytes { b in
                let bases = [a, b]
                try body(pieces.map { UnsafeRawBufferPointer(rebasing: bases[$0.buffer][$0.range]) })
            }
        }
    }
}
