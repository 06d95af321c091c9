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

    /// The segment holding a segmented entry's prefix (nil for an entry stored whole), checked
    /// against what the entry's pack says of it: the name the row and the pack agree on, the
    /// same shape and layers, a segment's own record of the same length, and the entry's own
    /// token ids before the seam. With `checkContent`, its content name too.
    public func segment(of record: EntryRecord, pack: PackReader, checkContent: Bool = false) throws -> PackReader? {
        guard let link = pack.header.segment, let name = link.name else {
            if let named = record.segment {
                throw StoreError.corrupt(path: pack.path, problem: "the index names segment \(named) but the pack is stored whole")
            }
            return nil
        }
        guard record.segment == name else {
            throw StoreError.corrupt(path: pack.path, problem: "the pack continues segment \(name), the index names \(record.segment ?? "none")")
        }
        let segment: PackReader
        do { segment = try root.blobs.openPack(name) } catch StoreError.io(_, _, ENOENT) {
            throw StoreError.corrupt(path: root.blobs.location(name), problem: "segment \(name) of entry \(record.id.prefix(16)) is missing")
        }
        let (h, s) = (pack.header, segment.header)
        var problem: String?
        if !s.isSegment || s.segment?.length != link.length || s.seqLen != link.length {
            problem = "it is not a segment of length \(link.length)"
        } else if s.layers.count != h.layers.count || s.kvHeads != h.kvHeads || s.headDim != h.headDim || s.vHeadDim != h.vHeadDim {
            problem = "its shape differs from the entry's"
        } else if let ids = h.inputIDs, s.inputIDs?.ids != Array(ids.ids.prefix(link.length)) {
            problem = "its token ids are not the entry's before position \(link.length)"
        } else if let digest = record.prefixDigest, record.prefixLength == link.length, s.segment?.prefixDigest != digest {
            problem = "its prefix digest is not the entry's"
        } else if let j = h.layers.indices.first(where: { s.layers[$0].prefix != s.layers[$0].count || h.layers[$0].prefix ?? 0 != 0 }) {
            problem = "layer \(j) does not meet at the seam"
        }
        if let problem { throw StoreError.corrupt(path: segment.path, problem: "segment \(name) of entry \(record.id.prefix(16)): \(problem)") }
        if checkContent { try segment.checkContent(named: name) }
        return segment
    }

    /// The entry's pack and segment, both content names checked: nothing is written before the
    /// files are proven to be this entry's. A segment gone missing while a compaction swapped
    /// the entry to another blob is not damage: the row is read again and the entry reopened.
    /// With `checkingContent` false, everything but the two content names (the caller hashes
    /// them before it publishes anything: `ContentCheck`).
    func openWhole(_ record: EntryRecord, checkingContent: Bool = true) throws -> (EntryRecord, PackReader, PackReader?) {
        var record = record
        for attempt in 0..<3 {
            let (current, pack) = try open(record)
            if checkingContent { try pack.checkContent(named: current.checksum) }
            do {
                return (current, pack, try segment(of: current, pack: pack, checkContent: checkingContent))
            } catch StoreError.corrupt(let path, let problem) where attempt < 2 {
                guard let fresh = try root.index.entry(id: current.id) else { throw StoreError.notFound("id \(current.id) (removed while fetching)") }
                guard fresh.blobs != current.blobs else { throw StoreError.corrupt(path: path, problem: problem) }
                record = fresh
            }
        }
        throw StoreError.notFound("blob of \(record.id)")
    }

    /// Writes `record` to `sink` and records the access. A sink that publishes only when
    /// finished has the blobs' content names checked while it is written, before it publishes.
    public func fetch(_ record: EntryRecord, options: FetchOptions, to sink: some FetchSink) throws {
        try write(plan(record, options: options, checkingContent: !sink.publishesWhenFinished), to: sink)
    }

    /// Opens the entry's pack and settles everything known before the first byte: the
    /// output's layout and length, and (with `expand`) that the entry can be expanded, so a
    /// stream can send its length up front and fail before it starts rather than half way.
    /// With `checkingContent` false the content names are left to `write`, which hashes them
    /// beside the output and checks them before finishing (only for a sink that publishes
    /// nothing before it finishes).
    public func plan(_ record: EntryRecord, options: FetchOptions, checkingContent: Bool = true) throws -> FetchPlan {
        let (record, pack, segment) = try openWhole(record, checkingContent: checkingContent)
        if options.raw {
            return FetchPlan(record: record, pack: pack, segment: segment, options: options, layout: nil, contentChecked: checkingContent)
        }
        if options.expand {
            // Layers whose members were not tracked can be expanded only if nothing in them was merged.
            do {
                for reader in [segment, pack].compactMap({ $0 }) {
                    for (i, d) in reader.header.layers.enumerated() where d.members == 0 {
                        let section = try reader.section(i)
                        if let j = section.sizes.firstIndex(where: { $0 != 1 }) {
                            throw FetchError.cannotExpand(layer: i, problem: "\(ExpandError.membersUnknown(position: section.positions[j], size: section.sizes[j]))")
                        }
                    }
                }
            } catch where !checkingContent {
                // What another blob in this one's place says is not this entry's: a refusal
                // names the damage first.
                try ContentCheck(Self.blobs(record, pack: pack, segment: segment)).wait()
                throw error
            }
        }
        return FetchPlan(record: record, pack: pack, segment: segment, options: options,
                         layout: try Self.layout(pack, segment: segment, options: options, id: record.id),
                         contentChecked: checkingContent)
    }

    /// The kvsnap layout a fetch of `pack` (and its `segment`) writes with `options`.
    static func layout(_ pack: PackReader, segment: PackReader?, options: FetchOptions, id: String) throws -> SafetensorsLayout {
        let (dtype, expand) = (options.dtype, options.expand)
        func n(_ d: SectionDescriptor) -> Int { expand && d.members > 0 ? d.members : d.count }
        let counts: [Int]?
        if let segment {
            // The prefix is the segment; the whole entry is the segment's entries, then its own.
            counts = pack.header.layers.indices.map { i in
                n(segment.header.layers[i]) + (options.prefix ? 0 : n(pack.header.layers[i]))
            }
        } else {
            counts = options.prefix ? try prefixCounts(pack, expand: expand) : nil
        }
        return layout(pack.header, dtype: dtype, expand: expand, prefixOf: options.prefix ? id : nil, counts: counts)
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

    /// `fetch --raw -o FILE` of a segmented entry: its part goes to FILE, and its segment to
    /// `<segment name>.kvpack` beside it (docs/design/segments.md), where `kvstore.read_pack`
    /// finds it; entries fetched into one folder share one copy. FILE must be a regular file
    /// (or a new name): nothing is written before the output is known to be one, and neither
    /// file is published before both blobs are proven.
    public func fetchRaw(_ record: EntryRecord, to output: String?) throws {
        let sink = try OutputSink(path: output)
        var beside: OutputSink?
        do {
            let plan = try self.plan(record, options: FetchOptions(raw: true), checkingContent: !sink.publishesWhenFinished)
            if plan.segment != nil {
                let name = plan.record.segment ?? "segment"
                guard sink.publishesWhenFinished, let output else { throw FetchError.segmentedRaw(id: record.id, segment: name) }
                let folder = (output as NSString).deletingLastPathComponent
                let path = (folder.isEmpty ? "." : folder) + "/\(name).kvpack"
                try OutputPlace.check(path, store: root)
                let segmentSink = try OutputSink(path: path)
                guard segmentSink.publishesWhenFinished else { throw FetchError.segmentedRaw(id: record.id, segment: name) }
                beside = segmentSink
            }
            try write(plan, to: sink, segmentTo: beside)
        } catch {
            beside?.abandon()
            sink.abandon()
            throw error
        }
    }

    /// Writes a planned fetch to `sink`, finishes it and records the access. With `segmentTo`
    /// (a raw fetch of a segmented entry) the segment's pack is written there and published
    /// first. The caller abandons the sinks when this throws.
    public func write(_ plan: FetchPlan, to sink: some FetchSink, segmentTo besideSink: (some FetchSink)? = OutputSink?.none) throws {
        precondition(plan.contentChecked || (sink.publishesWhenFinished && besideSink?.publishesWhenFinished ?? true),
                     "unchecked blobs written to a sink that publishes as it goes")
        let check = plan.contentChecked ? nil : ContentCheck(Self.blobs(plan.record, pack: plan.pack, segment: plan.segment))
        do {
            if let layout = plan.layout {
                try writeSnapshot(plan.pack, segment: plan.segment, layout: layout, options: plan.options, to: sink)
            } else {
                if let besideSink, let segment = plan.segment { try segment.streamWhole { try besideSink.write($0) } }
                try plan.pack.streamWhole { try sink.write($0) }
            }
        } catch {
            // A blob that is not what its row names is the cause to report, whatever the
            // bytes it held made fail (a full disk, values beyond F16); and the check's thread
            // holds the files: let it end with the fetch.
            try check?.wait()
            throw error
        }
        try check?.wait()
        try besideSink?.finish()
        try sink.finish()
        // The entry is delivered and published: recording the access is best effort. A full
        // disk, a busy, replaced or read-only index costs the LRU one access, never the fetch
        // (a fetch must work on a full disk, and a published file must not exit as a failure).
        try? root.index.touch(plan.record.id)
    }

    /// A fetch's blobs with the names their row gives them: its pack, and its segment.
    static func blobs(_ record: EntryRecord, pack: PackReader, segment: PackReader?) -> [(reader: PackReader, name: String)] {
        var blobs = [(reader: pack, name: record.checksum)]
        if let segment, let name = record.segment { blobs.append((segment, name)) }
        return blobs
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

    func writeSnapshot(_ pack: PackReader, segment: PackReader?, layout: SafetensorsLayout, options: FetchOptions,
                       to sink: some FetchSink) throws {
        let header = pack.header
        let (dtype, expand) = (options.dtype, options.expand)
        try layout.header.withUnsafeBytes { try sink.write($0) }
        let one: (PackReader, Int) throws -> [UInt8] = { reader, i in
            expand ? try Self.expandLayer(reader, i, dtype: dtype) : try Self.decodeLayer(reader, i, dtype: dtype)
        }
        // A layer as decoded: one buffer, or a segmented entry's two (the segment's entries,
        // then its own), which a positional sink takes as they are and a stream joined.
        let decode: (Int) throws -> DecodedLayer = { i in
            if let segment {
                let shared = try one(segment, i)
                if options.prefix { return DecodedLayer(whole: shared) }
                let n = layout.entries[4 * i].shape[1] - (try Self.outputCount(pack, i, expand: expand))
                return DecodedLayer(joining: shared, of: n, try one(pack, i), heads: header.kvHeads, headDim: header.headDim,
                                    vHeadDim: header.vHeadDim, dtype: dtype)
            }
            let layer = try one(pack, i)
            guard options.prefix else { return DecodedLayer(whole: layer) }
            let d = header.layers[i]
            return DecodedLayer(whole: Self.firstEntries(layer, of: expand && d.members > 0 ? d.members : d.count,
                                                         keeping: layout.entries[4 * i].shape[1], heads: header.kvHeads,
                                                         headDim: header.headDim, vHeadDim: header.vHeadDim, dtype: dtype))
        }
        let ids = Self.inputIDBytes(header, layout: layout)
        if sink.isPositional {
            // Every layer's place in the file is known from the layout: workers decode layers
            // and write them there in whatever order they finish, one write at a time.
            var offsets = [layout.header.count]
            for i in 0..<header.layers.count {
                offsets.append(offsets[i] + layout.entries[(4 * i)..<(4 * i + 4)].reduce(0) { $0 + $1.byteCount })
            }
            let failures = FirstFailure(), writer = PositionalWriter(sink), next = LayerTickets(count: header.layers.count)
            // Each worker holds the layer it decoded until it is written: `inFlight` workers
            // at most (or one per core), so memory stays at a few layers on any machine.
            let workers = max(1, min(options.inFlight, ProcessInfo.processInfo.activeProcessorCount, header.layers.count))
            DispatchQueue.concurrentPerform(iterations: workers) { _ in
                while !failures.happened, let i = next.take() {
                    do {
                        let layer = try decode(i)
                        guard layer.count == offsets[i + 1] - offsets[i] else {
                            throw StoreError.corrupt(path: pack.path, problem: "layer \(i) decoded to \(layer.count) bytes, the layout expects \(offsets[i + 1] - offsets[i])")
                        }
                        try writer.write(layer, at: offsets[i])
                    } catch { failures.record(error) }
                }
            }
            if let error = failures.error { throw error }
            if !ids.isEmpty { try ids.withUnsafeBytes { try sink.write($0, at: offsets[header.layers.count]) } }
        } else {
            // A stream: decode on the other cores while the calling thread writes in order.
            try OrderedPipeline.run(
                count: header.layers.count, inFlight: options.inFlight, stage: { i in { try decode(i).joined() } },
                consume: { chunk in try chunk.withUnsafeBytes { try sink.write($0) } })
            if !ids.isEmpty { try ids.withUnsafeBytes { try sink.write($0) } }
        }
    }

    /// Entries layer `i` of `pack` writes (members with `expand`).
    static func outputCount(_ pack: PackReader, _ i: Int, expand: Bool) throws -> Int {
        let d = pack.header.layers[i]
        return expand && d.members > 0 ? d.members : d.count
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

/// Hands out layer indices 0, 1, 2, … to the workers of a fetch, each once.
final class LayerTickets: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0
    private let count: Int
    init(count: Int) { self.count = count }

    func take() -> Int? {
        lock.withLock {
            guard next < count else { return nil }
            next += 1
            return next - 1
        }
    }
}

/// The first error of several worker threads.
final class FirstFailure: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var error: Error?
    var happened: Bool { lock.lock(); defer { lock.unlock() }; return error != nil }
    func record(_ e: Error) { lock.lock(); if error == nil { error = e }; lock.unlock() }
}
