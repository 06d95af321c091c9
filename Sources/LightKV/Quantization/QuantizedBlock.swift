/// Encodes and decodes one quantized key or value block (`int8`, `int4`, `int2`).
///
/// A block is self-contained: its header repeats the shape and settings, it lists the entries
/// kept in F16 and holds their values, so the decoder needs nothing but the bytes (the pack's
/// `BlockEncoding` and `BlockShape` are only checked against it). Sections, in order: header,
/// kept indices, kept F16 values (byte planes), scales (F16 byte planes), zero points (F16 byte
/// planes), packed codes; docs/FORMAT.md ("Quantized blocks") specifies each byte.
///
/// ```swift
/// let block = QuantizedBlock.encode(layer.keys, shape: shape, kept: [0, 1], settings: q, axis: .channel)
/// try BlockCodec.decode(bytes, encoding: block.encoding, elements: shape.elements, shape: shape, to: .f16, into: out)
/// ```
public enum QuantizedBlock {
    /// Quantizes `values` (`[heads, count, dim]`), keeping the entries at `kept` (ascending) in F16.
    /// `rotated` quantizes each quantized row's Hadamard rotation (`dim` a power of two); kept
    /// rows stay exact.
    public static func encode(_ values: [Float], shape: BlockShape, kept: [Int],
                              settings q: IntegerQuantization, axis: QuantAxis, rotated: Bool = false) -> EncodedBlock {
        precondition(values.count == shape.elements, "values do not match the block shape")
        precondition(!rotated || HadamardRotation.applies(to: shape.dim), "rotated rows need a power-of-two dim")
        var header = QuantizedBlockHeader(bits: q.bits, axis: axis, group: q.group, heads: shape.heads,
                                          count: shape.count, dim: shape.dim, kept: kept.count)
        header.rotated = rotated
        let rows = complement(of: kept, count: shape.count)
        var turned: [Float] = []
        if rotated {
            turned = values
            turned.withUnsafeMutableBufferPointer { t in
                for r in 0..<(shape.heads * shape.count) { HadamardRotation.apply(t.baseAddress! + r * shape.dim, shape.dim) }
            }
        }
        // Every byte is written below (header, sections, zero padding bits), so no memset.
        let out = [UInt8](unsafeUninitializedCapacity: header.totalBytes) { o, initialized in
            values.withUnsafeBufferPointer { src in
                turned.withUnsafeBufferPointer { rot in
                    write(header, kept: kept, rows: rows, source: src.baseAddress, quantizing: rotated ? rot.baseAddress : src.baseAddress,
                          into: UnsafeMutableRawPointer(o.baseAddress!))
                }
            }
            initialized = header.totalBytes
        }
        return EncodedBlock(encoding: BlockEncoding(scheme: q.scheme, group: q.group, axis: axis.name), bytes: out)
    }

    /// Writes the whole block. Per head, the ranges, parameters and codes passes run back to
    /// back so the head's floats (`count·dim·4` bytes) are read from cache the second time.
    /// `source` gives the kept rows, `quantizing` the rows to quantize (the same, or rotated).
    private static func write(_ header: QuantizedBlockHeader, kept: [Int], rows: [Int], source: UnsafePointer<Float>?,
                              quantizing: UnsafePointer<Float>?, into base: UnsafeMutableRawPointer) {
        header.write(to: base)
        for (i, k) in kept.enumerated() {
            precondition(k >= 0 && k < header.count && (i == 0 || k > kept[i - 1]), "kept entries must be ascending indices below count")
            base.storeBytes(of: UInt32(k).littleEndian, toByteOffset: header.keptIndicesOffset + 4 * i, as: UInt32.self)
        }
        let dim = header.dim
        guard let x = source, dim > 0, header.heads > 0 else { return }
        if !kept.isEmpty {
            var exact = [UInt8](repeating: 0, count: 2 * header.heads * kept.count * dim)
            exact.withUnsafeMutableBytes { e in
                for h in 0..<header.heads {
                    for (i, k) in kept.enumerated() {
                        Conversion.fromFloat(x + (h * header.count + k) * dim, count: dim, dtype: .f16,
                                             into: e.baseAddress! + 2 * (h * kept.count + i) * dim)
                    }
                }
                BytePlanes.split(e.baseAddress!, count: e.count / 2, width: 2, into: base + header.keptValuesOffset)
            }
        }
        let total = header.parameterCount
        guard total > 0, let rowsToQuantize = quantizing else { return }
        let quantizer: any GroupQuantizer.Type = header.axis == .channel ? KeyQuantizer.self : ValueQuantizer.self
        let perHead = total / header.heads, n = rows.count
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 4 * perHead)
        let bits = UnsafeMutablePointer<UInt16>.allocate(capacity: 2 * total)
        let unpacked = UnsafeMutablePointer<UInt8>.allocate(capacity: header.bits == 8 ? 0 : n * dim)
        defer { scratch.deallocate(); bits.deallocate(); unpacked.deallocate() }
        let mins = scratch, maxs = scratch + perHead, zero = scratch + 2 * perHead, inverse = scratch + 3 * perHead
        let scaleBits = bits, zeroBits = bits + total
        let codes = (base + header.codesOffset).assumingMemoryBound(to: UInt8.self)
        for h in 0..<header.heads {
            quantizer.ranges(rowsToQuantize, header: header, rows: rows, head: h, mins: mins, maxs: maxs)
            QuantParameters.fit(mins: mins, maxs: maxs, count: perHead, levels: header.levels,
                                scaleBits: scaleBits + h * perHead, zeroBits: zeroBits + h * perHead, zero: zero, inverse: inverse)
            let headCodes = codes + h * n * header.rowBytes
            if header.bits == 8 {
                quantizer.codes(rowsToQuantize, header: header, rows: rows, head: h, zero: zero, inverse: inverse, into: headCodes)
            } else {
                quantizer.codes(rowsToQuantize, header: header, rows: rows, head: h, zero: zero, inverse: inverse, into: unpacked)
                for r in 0..<n {
                    CodePacking.pack(unpacked + r * dim, count: dim, bits: header.bits, into: headCodes + r * header.rowBytes)
                }
            }
            if header.deltaRows { CodeDelta.encode(headCodes, rows: n, rowBytes: header.rowBytes, bits: header.bits) }
        }
        BytePlanes.split(scaleBits, count: total, width: 2, into: base + header.scalesOffset)
        BytePlanes.split(zeroBits, count: total, width: 2, into: base + header.zerosOffset)
    }

    /// Bits per code of a quantized scheme name, nil for other schemes.
    public static func bits(scheme: String) -> Int? {
        switch scheme {
        case "int8": 8
        case "int4": 4
        case "int2": 2
        default: nil
        }
    }

    /// Decodes a quantized block into `[heads, count, dim]` elements of `dtype` (F16, BF16, F32).
    ///
    /// Checks every length and index before writing, so a damaged block throws instead of
    /// trapping or producing numbers from outside the block.
    public static func decode(_ block: UnsafeRawBufferPointer, encoding: BlockEncoding, elements: Int, shape: BlockShape,
                              to dtype: DType, into destination: UnsafeMutableRawPointer) throws(BlockError) {
        let scheme = encoding.scheme
        guard let bits = bits(scheme: scheme) else { throw .unknownScheme(scheme) }
        guard elements == shape.elements else {
            throw .badHeader(scheme: scheme, field: "elements", value: elements, expected: "\(shape.elements) (heads·count·dim)")
        }
        let header = try QuantizedBlockHeader.read(block, scheme: scheme, bits: bits, encoding: encoding, shape: shape)
        var kept = [Int](repeating: 0, count: header.kept)
        for i in 0..<header.kept {
            let k = Int(UInt32(littleEndian: block.loadUnaligned(fromByteOffset: header.keptIndicesOffset + 4 * i, as: UInt32.self)))
            guard k < header.count, i == 0 || k > kept[i - 1] else {
                throw .badKeptIndex(scheme: scheme, slot: i, value: k, count: header.count)
            }
            kept[i] = k
        }
        let keptValues = joinedF16(block, offset: header.keptValuesOffset, count: header.heads * header.kept * header.dim)
        let scaleBits = joinedF16(block, offset: header.scalesOffset, count: header.parameterCount)
        let zeroBits = joinedF16(block, offset: header.zerosOffset, count: header.parameterCount)
        for (section, bits) in [("kept values", keptValues), ("scales", scaleBits), ("zero points", zeroBits)] {
            let ok = bits.withUnsafeBytes { Conversion.allFinite($0, dtype: .f16) }
            guard ok else { throw .nonFinite(scheme: scheme, section: section) }
        }
        let rows = complement(of: kept, count: header.count)
        switch (header.axis, dtype) {
        case (.channel, .f16): write(KeyQuantizer.self, F16Output.self)
        case (.channel, .bf16): write(KeyQuantizer.self, BF16Output.self)
        case (.channel, .f32): write(KeyQuantizer.self, F32Output.self)
        case (.token, .f16): write(ValueQuantizer.self, F16Output.self)
        case (.token, .bf16): write(ValueQuantizer.self, BF16Output.self)
        case (.token, .f32): write(ValueQuantizer.self, F32Output.self)
        case (_, .i32), (_, .i64): throw .unsupportedOutput(scheme: scheme, dtype: dtype.rawValue)
        }

        func write<Q: GroupQuantizer, O: DequantizedOutput>(_: Q.Type, _: O.Type) {
            let dim = header.dim
            guard dim > 0 else { return }
            keptValues.withUnsafeBufferPointer { kv in
                for h in 0..<header.heads {
                    for (i, k) in kept.enumerated() {
                        O.store(f16: kv.baseAddress! + (h * header.kept + i) * dim, count: dim,
                                to: destination, at: (h * header.count + k) * dim)
                    }
                }
            }
            guard header.parameterCount > 0 else { return }
            let scale = floats(scaleBits), zero = floats(zeroBits)
            var scratch = [UInt8](repeating: 0, count: dim)
            // A rotated row is dequantized here, rotated back, then stored.
            var rotatedRow = [Float](repeating: 0, count: header.rotated ? dim : 0)
            // Delta-coded rows are summed back into a copy; plain rows are read in place.
            var summed = [UInt8]()
            if header.deltaRows {
                let rowsPerHead = header.quantized, length = header.heads * rowsPerHead * header.rowBytes
                summed = Array(UnsafeRawBufferPointer(rebasing: block[header.codesOffset..<(header.codesOffset + length)]))
                summed.withUnsafeMutableBufferPointer { c in
                    for h in 0..<header.heads where rowsPerHead > 0 {
                        CodeDelta.decode(c.baseAddress! + h * rowsPerHead * header.rowBytes, rows: rowsPerHead,
                                         rowBytes: header.rowBytes, bits: bits)
                    }
                }
            }
            summed.withUnsafeBufferPointer { sum in
            scale.withUnsafeBufferPointer { s in zero.withUnsafeBufferPointer { z in scratch.withUnsafeMutableBufferPointer { u in
            rotatedRow.withUnsafeMutableBufferPointer { turned in
                let codes = header.deltaRows ? sum.baseAddress! : block.baseAddress!.assumingMemoryBound(to: UInt8.self) + header.codesOffset
                for h in 0..<header.heads {
                    for (r, entry) in rows.enumerated() {
                        var row = codes + (h * header.quantized + r) * header.rowBytes
                        if bits != 8 {
                            CodePacking.unpack(row, count: dim, bits: bits, into: u.baseAddress!)
                            row = UnsafePointer(u.baseAddress!)
                        }
                        let at = (h * header.count + entry) * dim
                        guard header.rotated else {
                            Q.dequantizeRow(row, header: header, head: h, row: r, scale: s.baseAddress!, zero: z.baseAddress!,
                                            output: destination, at: at, as: O.self)
                            continue
                        }
                        Q.dequantizeRow(row, header: header, head: h, row: r, scale: s.baseAddress!, zero: z.baseAddress!,
                                        output: UnsafeMutableRawPointer(turned.baseAddress!), at: 0, as: F32Output.self)
                        HadamardRotation.apply(turned.baseAddress!, dim)
                        var d = 0
                        while d + 16 <= dim {
                            O.store(UnsafeRawPointer(turned.baseAddress! + d).loadUnaligned(as: SIMD16<Float>.self), to: destination, at: at + d)
                            d += 16
                        }
                        while d < dim { O.store(turned[d], to: destination, at: at + d); d += 1 }
                    }
                }
            }}}}}
        }
    }

    /// Indices in `0..<count` not in `kept` (ascending), in order: the quantized entries.
    static func complement(of kept: [Int], count: Int) -> [Int] {
        var rows: [Int] = []
        rows.reserveCapacity(count - kept.count)
        var next = 0
        for j in 0..<count {
            if next < kept.count && kept[next] == j { next += 1 } else { rows.append(j) }
        }
        return rows
    }

    /// F16 bit patterns of a byte-plane section.
    private static func joinedF16(_ block: UnsafeRawBufferPointer, offset: Int, count: Int) -> [UInt16] {
        [UInt16](unsafeUninitializedCapacity: count) { out, n in
            if count > 0 { BytePlanes.join(block.baseAddress! + offset, count: count, width: 2, into: out.baseAddress!) }
            n = count
        }
    }

    private static func floats(_ bits: [UInt16]) -> [Float] {
        bits.withUnsafeBytes { Conversion.floats($0, dtype: .f16) }
    }
}
