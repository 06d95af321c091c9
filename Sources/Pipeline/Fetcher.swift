import Dispatch
import Foundation
import LightKV
import Store

/// How a fetched entry is written.
public struct FetchOptions: Sendable {
    /// Dtype of keys and values in the output.
    public var dtype: DType = .f16
    /// Write the kvpack file itself instead of a kvsnap.
    public var raw = false
    /// Repeat each merged entry once per member, at the members' own positions with size 1,
    /// for engines that cannot add log(size) to a logit (KVLayer.expanded()).
    public var expand = false
    /// Write the shareable prefix alone (KVSNAP.md, "The shareable prefix"): the entries at
    /// positions before the first prompt span, for a serving node that asks a new question.
    public var prefix = false
    /// Layers decoded ahead of the one being written to a stream (memory: about this many
    /// decoded layers).
    public var inFlight = 3
    public init(dtype: DType = .f16, raw: Bool = false, expand: Bool = false, prefix: Bool = false, inFlight: Int = 3) {
        self.dtype = dtype; self.raw = raw; self.expand = expand; self.prefix = prefix; self.inFlight = max(1, inFlight)
    }
}

/// Writes a stored entry back out as a kvsnap file (KVSNAP.md, "What kvstore fetch returns").
///
/// Layers are decoded on all cores, two at a time, and streamed out in order, so memory
/// stays at a few layers whatever the entry's size.
public struct Fetcher {
    public let root: StoreRoot

    public init(root: StoreRoot) { self.root = root }

    /// Opens the pack of an entry. Compaction may swap an entry's blob between reading the
    /// row and opening the file; the row is then read again.
    ///
    /// A pack that names another entry in its header (another blob copied into this one's
    /// place) is refused here, at the cost of nothing: every path, ranged reads of the HTTP
    /// service included, gets that much. Whole-file paths also check the content name
    /// (`PackReader.checkContent`).
    public func open(_ record: EntryRecord) throws -> (EntryRecord, PackReader) {
        var record = record
        for attempt in 0..<3 {
            do {
                let pack = try PackReader(path: root.blobs.readablePath(record.blob))
                if let owner = pack.header.entry?.id, owner != record.id {
                    throw StoreError.corrupt(path: pack.path, problem: "the pack belongs to entry \(owner.prefix(80)), not \(record.id) (another entry's blob in its place)")
                }
                return (record, pack)
            } catch StoreError.io(_, _, let e)
            where e == ENOENT && attempt < 2 {
                guard let fresh = try root.index.entry(id: record.id) else { throw StoreError.notFound("id \(record.id) (removed while fetching)") }
                record = fresh
            }
        }
        throw StoreError.notFound("blob of \(record.id)")
    }

    /// Writes `record` to `sink` and records the access.
    public func fetch(_ record: EntryRecord, options: FetchOptions, to sink: some FetchSink) throws {
        try write(plan(record, options: options), to: sink)
    }

    /// Opens the entry's pack and settles everything known before the first byte: the
    /// output's layout and length, and (with `expand`) that the entry can be expanded, so a
    /// stream can send its length up front and fail before it starts rather than half way.
    public func plan(_ record: EntryRecord, options: FetchOptions) throws -> FetchPlan {
        let (record, pack) = try open(record)
        // Nothing is written before the file is proven to be this entry's blob.
        try pack.checkContent(named: record.checksum)
        if options.raw { return FetchPlan(record: record, pack: pack, options: options, layout: nil) }
        if options.expand {
            // Layers whose members were not tracked can be expanded only if nothing in them was merged.
            for (i, d) in pack.header.layers.enumerated() where d.members == 0 {
                let section = try pack.section(i)
                if let j = section.sizes.firstIndex(where: { $0 != 1 }) {
                    throw FetchError.cannotExpand(layer: i, problem: "\(ExpandError.membersUnknown(position: section.positions[j], size: section.sizes[j]))")
                }
            }
        }
        let counts = options.prefix ? try Self.prefixCounts(pack, expand: options.expand) : nil
        return FetchPlan(record: record, pack: pack, options: options,
                         layout: Self.layout(pack.header, dtype: options.dtype, expand: options.expand,
                                             prefixOf: options.prefix ? record.id : nil, counts: counts))
    }

    /// Entries of each layer before the shareable prefix's end, as the output holds them (one
    /// per member with `expand`). Packs record the count (`SectionDescriptor.prefix`); older
    /// ones, and expanded output, count from the section's positions and sizes.
    static func prefixCounts(_ pack: PackReader, expand: Bool) throws -> [Int] {
        let end = pack.header.prefixEnd
        return try pack.header.layers.indices.map { i in
            let d = pack.header.layers[i]
            if let k = d.prefix, !expand || d.members == 0 { return k }
            let section = try pack.section(i)
            let k = d.prefix ?? section.positions.prefix { Int($0) < end }.count
            return expand && d.members > 0 ? section.sizes.prefix(k).reduce(0) { $0 + Int($1) } : k
        }
    }

    /// Writes a planned fetch to `sink`, finishes it and records the access.
    public func write(_ plan: FetchPlan, to sink: some FetchSink) throws {
        if let layout = plan.layout {
            try writeSnapshot(plan.pack, layout: layout, options: plan.options, to: sink)
        } else {
            try sink.write(plan.pack.bytes)
        }
        try sink.finish()
        // The entry is delivered: a full disk, a busy or a replaced index costs the LRU one
        // access, never the fetch (a fetch must work on a full disk).
        do { try root.index.touch(plan.record.id) } catch let error as StoreError where error.isTransient {}
    }

    /// The kvsnap layout of a pack: per layer key, value, positions, sizes, then `input_ids`
    /// when the input carried them. With `expand`, each layer holds one entry per member.
    /// With `prefixOf` (the entry's id) and `counts`, the shareable prefix alone: each layer's
    /// first `counts[i]` entries, the spans before the prompt, `seq_len` the prefix's length,
    /// and `kvsnap.prefix_of` naming the entry; the producer's key and next position, which
    /// describe the whole request, are left out.
    public static func layout(_ header: PackHeader, dtype: DType, expand: Bool = false,
                              prefixOf entry: String? = nil, counts: [Int]? = nil) -> SafetensorsLayout {
        var entries: [SafetensorsLayout.Entry] = []
        for (i, d) in header.layers.enumerated() {
            let n = counts?[i] ?? (expand && d.members > 0 ? d.members : d.count)
            entries.append(.init("layers.\(i).key", dtype, [header.kvHeads, n, header.headDim]))
            entries.append(.init("layers.\(i).value", dtype, [header.kvHeads, n, header.vHeadDim]))
            entries.append(.init("layers.\(i).positions", .i32, [n]))
            entries.append(.init("layers.\(i).sizes", .i32, [n]))
        }
        let length = entry == nil ? header.seqLen : header.prefixEnd
        if let ids = header.inputIDs, let dtype = DType(rawValue: ids.dtype) {
            entries.append(.init(Snapshot.inputIDsName, dtype, [length]))
        }
        var metadata = header.metadata
        metadata[SnapshotMetadata.compressionKey] = SafetensorsLayout.canonicalJSON(header.compression)
        metadata[SnapshotMetadata.seqLenKey] = String(length)
        if let entry, let parsed = try? SnapshotMetadata(parsing: header.metadata) {
            metadata[SnapshotMetadata.spansKey] = SnapshotMetadata.encode(parsed.spans.filter { $0.end <= length })
            metadata[SnapshotMetadata.keyKey] = nil
            metadata[SnapshotMetadata.nextPositionKey] = nil
            metadata[SnapshotMetadata.prefixOfKey] = entry
        }
        return SafetensorsLayout(entries: entries, metadata: metadata)
    }

    /// The `input_ids` tensor's bytes as the layout holds them (empty when it has none).
    static func inputIDBytes(_ header: PackHeader, layout: SafetensorsLayout) -> [UInt8] {
        guard let ids = header.inputIDs, let entry = layout.entries.last, entry.name == Snapshot.inputIDsName else { return [] }
        let kept = ids.ids.prefix(entry.shape[0])
        if ids.dtype == "I32" { return kept.map { Int32(truncatingIfNeeded: $0).littleEndian }.withUnsafeBytes { Array($0) } }
        return kept.map(\.littleEndian).withUnsafeBytes { Array($0) }
    }

    /// The first `k` of a decoded layer's `n` entries (keys, values, positions, sizes as the
    /// output file lays them out): the shareable prefix, whose entries come first.
    static func firstEntries(_ layer: [UInt8], of n: Int, keeping k: Int, heads: Int, headDim: Int, vHeadDim: Int, dtype: DType) -> [UInt8] {
        guard k < n else { return layer }
        var out = [UInt8](); out.reserveCapacity(heads * k * (headDim + vHeadDim) * dtype.size + 8 * k)
        var offset = 0
        for dim in [headDim, vHeadDim] {
            let row = n * dim * dtype.size, kept = k * dim * dtype.size
            for h in 0..<heads { out += layer[(offset + h * row)..<(offset + h * row + kept)] }
            offset += heads * row
        }
        out += layer[offset..<(offset + 4 * k)]  // positions
        out += layer[(offset + 4 * n)..<(offset + 4 * n + 4 * k)]  // sizes
        return out
    }

    func writeSnapshot(_ pack: PackReader, layout: SafetensorsLayout, options: FetchOptions, to sink: some FetchSink) throws {
        let header = pack.header
        let (dtype, expand) = (options.dtype, options.expand)
        try layout.header.withUnsafeBytes { try sink.write($0) }
        let decode: (Int) throws -> [UInt8] = { i in
            let layer = expand ? try Self.expandLayer(pack, i, dtype: dtype) : try Self.decodeLayer(pack, i, dtype: dtype)
            guard options.prefix else { return layer }
            let d = header.layers[i]
            return Self.firstEntries(layer, of: expand && d.members > 0 ? d.members : d.count,
                                     keeping: layout.entries[4 * i].shape[1], heads: header.kvHeads,
                                     headDim: header.headDim, vHeadDim: header.vHeadDim, dtype: dtype)
        }
        let ids = Self.inputIDBytes(header, layout: layout)
        if sink.isPositional {
            // Every layer's place in the file is known from the layout: each worker decodes a
            // layer and writes it there itself, so the page-cache copies run on all cores too.
            var offsets = [layout.header.count]
            for i in 0..<header.layers.count {
                offsets.append(offsets[i] + layout.entries[(4 * i)..<(4 * i + 4)].reduce(0) { $0 + $1.byteCount })
            }
            let failures = FirstFailure()
            DispatchQueue.concurrentPerform(iterations: header.layers.count) { i in
                guard !failures.happened else { return }
                do {
                    let chunk = try decode(i)
                    guard chunk.count == offsets[i + 1] - offsets[i] else {
                        throw StoreError.corrupt(path: pack.path, problem: "layer \(i) decoded to \(chunk.count) bytes, the layout expects \(offsets[i + 1] - offsets[i])")
                    }
                    try chunk.withUnsafeBytes { try sink.write($0, at: offsets[i]) }
                } catch { failures.record(error) }
            }
            if let error = failures.error { throw error }
            if !ids.isEmpty { try ids.withUnsafeBytes { try sink.write($0, at: offsets[header.layers.count]) } }
        } else {
            // A stream: decode on the other cores while the calling thread writes in order.
            try OrderedPipeline.run(
                count: header.layers.count, inFlight: options.inFlight, stage: { i in { try decode(i) } },
                consume: { chunk in try chunk.withUnsafeBytes { try sink.write($0) } })
            if !ids.isEmpty { try ids.withUnsafeBytes { try sink.write($0) } }
        }
    }

    /// One layer expanded (one entry per member) and laid out as in the output file.
    static func expandLayer(_ pack: PackReader, _ i: Int, dtype: DType) throws -> [UInt8] {
        let h = pack.header
        let merged = try pack.section(i).floatLayer(kvHeads: h.kvHeads, headDim: h.headDim, vHeadDim: h.vHeadDim, path: pack.path)
        let layer: KVLayer
        do { layer = try merged.expanded() } catch { throw FetchError.cannotExpand(layer: i, problem: "\(error)") }
        var out = Conversion.bytes(layer.keys, dtype: dtype)
        try out.withUnsafeBytes { try checkFits($0, dtype: dtype, stored: pack.header.layers[i].keys.encoding, layer: i, part: "keys") }
        let values = Conversion.bytes(layer.values, dtype: dtype)
        try values.withUnsafeBytes { try checkFits($0, dtype: dtype, stored: pack.header.layers[i].values.encoding, layer: i, part: "values") }
        out += values
        for p in layer.positions { withUnsafeBytes(of: p.littleEndian) { out += $0 } }
        for s in layer.sizes { withUnsafeBytes(of: s.littleEndian) { out += $0 } }
        return out
    }

    /// Refuses F16 output of a block stored wider (BF16, F32, or quantized) whose values
    /// overflow F16, rather than write Inf with exit 0. Raw F16 blocks were checked finite
    /// at ingest and are skipped.
    static func checkFits(_ output: UnsafeRawBufferPointer, dtype: DType, stored: BlockEncoding, layer: Int, part: String) throws {
        guard dtype == .f16, stored.scheme != "f16" else { return }
        guard Conversion.allFinite(output, dtype: .f16) else { throw FetchError.exceedsF16(layer: layer, part: part) }
    }

    /// One layer's tensors exactly as they follow each other in the output file.
    static func decodeLayer(_ pack: PackReader, _ i: Int, dtype: DType) throws -> [UInt8] {
        let h = pack.header
        let section = try pack.section(i)
        let n = section.descriptor.count
        let keyBytes = h.kvHeads * n * h.headDim * dtype.size
        let valueBytes = h.kvHeads * n * h.vHeadDim * dtype.size
        let total = keyBytes + valueBytes + 8 * n
        var thrown: Error?
        let out = [UInt8](unsafeUninitializedCapacity: total) { buf, initialized in
            let base = UnsafeMutableRawPointer(buf.baseAddress!)
            do {
                try section.decode(values: false, heads: h.kvHeads, dim: h.headDim, to: dtype, into: base, path: pack.path)
                try section.decode(values: true, heads: h.kvHeads, dim: h.vHeadDim, to: dtype, into: base + keyBytes, path: pack.path)
                try checkFits(UnsafeRawBufferPointer(start: base, count: keyBytes), dtype: dtype, stored: section.descriptor.keys.encoding, layer: i, part: "keys")
                try checkFits(UnsafeRawBufferPointer(start: base + keyBytes, count: valueBytes), dtype: dtype, stored: section.descriptor.values.encoding, layer: i, part: "values")
                section.raw.withUnsafeBytes { r in
                    // Positions and sizes are stored exactly as the output wants them.
                    (base + keyBytes + valueBytes).copyMemory(from: r.baseAddress! + section.descriptor.positionsOffset, byteCount: 8 * n)
                }
            } catch { thrown = error; memset(base, 0, total) }
            initialized = total
        }
        if let thrown { throw thrown }
        return out
    }
}

/// The first error of several worker threads.
final class FirstFailure: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var error: Error?
    var happened: Bool { lock.lock(); defer { lock.unlock() }; return error != nil }
    func record(_ e: Error) { lock.lock(); if error == nil { error = e }; lock.unlock() }
}
