import Foundation
import Hummingbird
import LightKV
import Pipeline
import Store

/// The bytes of an entry: the kvsnap `kvstore fetch` writes, the stored pack, its layout.
extension StoreResponder {
    func kvsnap(_ id: String, _ query: Query, _ request: Request,
                started: ContinuousClock.Instant) async throws -> Response {
        let dtypeText = query["dtype"] ?? "f16"
        guard let dtype = DType(userName: dtypeText), dtype.isFloat else {
            throw APIError.badRequest("dtype \"\(dtypeText.prefix(40))\": expected f16, bf16 or f32")
        }
        let expand: Bool
        switch query["expand"] {
        case nil, "0", "false": expand = false
        case "1", "true": expand = true
        case let v?: throw APIError.badRequest("expand \"\(v.prefix(40))\": expected 0 or 1")
        }
        let prefix: Bool
        switch query["prefix"] {
        case nil, "0", "false": prefix = false
        case "1", "true": prefix = true
        case let v?: throw APIError.badRequest("prefix \"\(v.prefix(40))\": expected 0 or 1")
        }
        // Two layers ahead keep both cores decoding for one client; more clients share them.
        let options = FetchOptions(dtype: dtype, expand: expand, prefix: prefix, inFlight: 3)
        let ifNoneMatch = request.headers[.ifNoneMatch]
        let outcome: (plan: FetchPlan?, record: EntryRecord) = try await pool.run { root in
            let record = try root.index.resolve(id)
            if Self.matches(ifNoneMatch, Self.snapshotTag(record, options)) {
                try root.index.touch(record.id)
                return (nil, record)
            }
            let plan = try Self.namingSegment(of: record, in: root) { try Fetcher(root: root).plan(record, options: options) }
            return (plan, plan.record)
        }
        let tag = Self.snapshotTag(outcome.record, options)
        guard let plan = outcome.plan else { return Response(status: .notModified, headers: [.eTag: tag]) }
        let (pool, metrics, logger) = (self.pool, self.metrics, self.logger)
        let body = ResponseBody(contentLength: plan.byteCount) { writer in
            let channel = ChunkChannel()
            StorePool.detach(long: true) {
                do {
                    try pool.with { root in try Fetcher(root: root).write(plan, to: channel) }
                } catch {
                    if !(error is CancellationError) { logger.error("fetch of \(plan.record.id) stopped mid-stream: \(error)") }
                    channel.fail(error)
                }
            }
            do {
                for try await chunk in channel.stream {
                    let n = chunk.readableBytes
                    try await writer.write(chunk)
                    metrics.bytesOut(route: Route.kvsnap(id).template, n)
                    channel.sent()
                }
            } catch {
                channel.cancel()
                throw error
            }
            try await writer.finish(nil)
            metrics.fetched(ContinuousClock.now - started, route: Route.kvsnap(id).template, policy: plan.record.policy)
        }
        return Response(status: .ok, headers: [.contentType: "application/octet-stream", .eTag: tag,
                                               .contentDisposition: "attachment; filename=\"\(plan.record.id.prefix(16)).safetensors\""],
                        body: body)
    }

    /// The stored pack, or with `segment` a segmented entry's segment (docs/design/segments.md:
    /// the part names it; a client reads both, as `fetch --raw` writes both).
    func pack(_ id: String, _ request: Request, started: ContinuousClock.Instant, segment: Bool) async throws -> Response {
        let ifNoneMatch = request.headers[.ifNoneMatch], ifMatch = request.headers[.ifMatch]
        let proofs = self.proofs
        let (file, record, rangeHeader, blob) = try await pool.run { root -> (ReadOnlyFile, EntryRecord, String?, String) in
            var (record, pack, blob) = try Self.openServed(root, id, segment: segment, ifMatch: ifMatch)
            var file: ReadOnlyFile
            // On a shared store the path is this node's cached copy, which `verify` may drop and
            // download again (the same bytes, a new inode) between the reader's open and this
            // one: both are opened again, and the content check below proves the pair, so only
            // a file that really changed is reported.
            var attempt = 1
            while true {
                do {
                    file = try ReadOnlyFile(path: pack.path)
                    if file.identity == pack.identity { break }
                    guard attempt < 3 else {
                        throw StoreError.corrupt(path: pack.path, problem: "the file changed while it was being opened")
                    }
                } catch StoreError.io(_, _, ENOENT) where attempt < 3 {}
                attempt += 1
                (record, pack, blob) = try Self.openServed(root, id, segment: segment, ifMatch: ifMatch)
            }
            // A range is served only under `If-Range` naming this pack (RFC 9110 §13.1.5): a
            // client resuming a pack compaction has re-packed since gets the whole new one.
            let rangeHeader = request.headers[.ifRange].map { Self.matchesStrong($0, "\"\(blob)\"") } == false ? nil : request.headers[.range]
            let range = (try? ByteRange.parse(rangeHeader, size: file.size)) ?? nil
            // Served only once its content is proven the blob the row names, as `fetch --raw`
            // does: the whole pack hashed at every read (and again as it is sent, below),
            // a range once for the file as it is (`ContentProofs`; the client checks each
            // section against the layout, which came from the same proven file).
            try Self.namingSegment(of: record, in: root) { try proofs.check(pack, named: blob, always: range == nil) }
            // A client reading layer by layer makes one request per layer: count the reads
            // that start at the beginning (the whole pack, or its first range).
            if !segment, (range?.start ?? 0) == 0 { try root.index.touch(record.id) }
            record.blob = blob
            return (file, record, rangeHeader, blob)
        }
        let tag = "\"\(blob)\""
        // A client reading layer by layer names the pack its layout came from: if compaction
        // has re-packed the entry since, the offsets no longer fit, and it must start over.
        // Preconditions first, then the range (RFC 9110 §13.2.2): a stale pack is 412 even
        // where the range lies past the new one's end.
        if let ifMatch, !Self.matchesStrong(ifMatch, tag) { throw Self.repacked(ifMatch, now: blob, segment: segment) }
        if Self.matches(ifNoneMatch, tag) { return Response(status: .notModified, headers: [.eTag: tag]) }
        let range = try ByteRange.parse(rangeHeader, size: file.size)
        let whole = ByteRange(start: 0, end: file.size - 1)
        let span = range ?? whole
        var headers: HTTPFields = [.contentType: "application/octet-stream", .eTag: tag, .acceptRanges: "bytes"]
        if range != nil { headers[.contentRange] = "bytes \(span.start)-\(span.end)/\(file.size)" }
        let (metrics, logger) = (self.metrics, self.logger)
        let body = ResponseBody(contentLength: file.size == 0 ? 0 : span.count) { writer in
            // A whole read's bytes are hashed as they are sent, and its last chunk goes only once
            // they are the blob's content: a file changed since the check above (a disk's fault,
            // a hand's) ends the answer short of Content-Length, never whole with other bytes.
            let digest = range == nil ? ContentDigest() : nil
            var offset = span.start
            while file.size > 0 && offset <= span.end {
                let n = min(ChunkChannel.chunkBytes, span.end + 1 - offset)
                let chunk = try file.read(at: offset, count: n)
                if let digest {
                    chunk.withUnsafeReadableBytes { digest.update($0) }
                    if offset + n > span.end, digest.hex != blob {
                        logger.error("pack of \(record.id) stopped mid-stream: its file no longer holds \(blob) (content \(digest.hex))")
                        throw StoreError.corrupt(path: file.path, problem: "content is \(digest.hex) while sent, the index expects \(blob)")
                    }
                }
                try await writer.write(chunk)
                metrics.bytesOut(route: Route.pack(id).template, n)
                offset += n
            }
            try await writer.finish(nil)
            metrics.fetched(ContinuousClock.now - started, route: Route.pack(id).template, policy: record.policy)
        }
        return Response(status: range == nil ? .ok : .partialContent, headers: headers, body: body)
    }

    func layout(_ id: String, _ request: Request, segment: Bool) async throws -> Response {
        struct Layer: Encodable { var index: Int; var offset: Int; var length: Int; var count: Int }
        struct Layout: Encodable {
            var id: String; var blob: String; var size: Int
            var header_offset: Int; var header_length: Int
            var layers: [Layer]; var header: LayoutHeader
        }
        let proofs = self.proofs, ifMatch = request.headers[.ifMatch]
        let layout = try await pool.run { root in
            var (record, pack, blob) = try Self.openServed(root, id, segment: segment, ifMatch: ifMatch)
            if !segment { try root.index.touch(record.id) }
            // A client checks the ranges it reads against these offsets and checksums: they
            // must come from the blob the row names, not from another file in its place.
            try Self.namingSegment(of: record, in: root) { try proofs.check(pack, named: blob) }
            record.blob = blob
            let h = pack.header
            let headerOffset = h.layers.last.map { $0.offset + $0.storedLength } ?? PackHeader.magic.count
            return Layout(id: record.id, blob: record.blob, size: pack.size, header_offset: headerOffset,
                          header_length: pack.size - PackHeader.footerLength - headerOffset,
                          layers: h.layers.enumerated().map { Layer(index: $0, offset: $1.offset, length: $1.storedLength, count: $1.count) },
                          header: LayoutHeader(h))
        }
        if let ifMatch, !Self.matchesStrong(ifMatch, "\"\(layout.blob)\"") { throw Self.repacked(ifMatch, now: layout.blob, segment: segment) }
        return try Self.json(layout, headers: [.eTag: "\"\(layout.blob)\""])
    }

    /// The pack a data route serves and its content name: the entry's part, or with `segment`
    /// the segment the part names. A client reading a segment names, in `If-Match`, the one
    /// its part named: a row that names another segment, or none (re-packed since, maybe
    /// whole), is 412 before any 404, so a client starts over rather than take the entry for
    /// gone. A segment missing because the row changed meanwhile (compaction re-packed the
    /// entry and collected it) is 412 too, the row read again as `Fetcher.openWhole` does;
    /// missing while the row still names it, it is damage.
    static func openServed(_ root: StoreRoot, _ id: String, segment: Bool, ifMatch: String?) throws -> (EntryRecord, PackReader, String) {
        let fetcher = Fetcher(root: root)
        let (record, pack) = try fetcher.open(try root.index.resolve(id))
        guard segment else { return (record, pack, record.blob) }
        if let ifMatch, record.segment.map({ matchesStrong(ifMatch, "\"\($0)\"") }) != true {
            throw repacked(ifMatch, now: record.segment, segment: true)
        }
        do {
            guard let shared = try namingSegment(of: record, in: root, { try fetcher.segment(of: record, pack: pack) }) else { throw notSegmented(record) }
            return (record, shared, record.segment!)
        } catch let e as DamagedSegment {
            guard let fresh = try root.index.entry(id: record.id) else { throw StoreError.notFound("id \(record.id) (removed while fetching)") }
            guard fresh.blobs == record.blobs else { throw repacked(ifMatch, now: fresh.segment, segment: true) }
            throw e
        }
    }

    /// 412: the entry's pack (or segment) is now `blob` (nil: it has no segment any more),
    /// not the one the client read first.
    static func repacked(_ ifMatch: String?, now blob: String?, segment: Bool) -> APIError {
        let tag = blob.map { "\"\($0)\"" }
        let now = tag.map { "its \(segment ? "segment" : "pack") is now \($0)" } ?? "it has no segment now"
        return APIError(status: .preconditionFailed, code: "precondition_failed",
                        message: "the entry was re-packed since it was first read: \(now)\(ifMatch.map { ", not \($0.prefix(100))" } ?? ""); read its layout again",
                        headers: tag.map { [.eTag: $0] } ?? [:])
    }

    /// Runs `body`, recording what damage it finds for `match` (`StoreRoot.noting`); a check
    /// failing on `record`'s segment is reported as the segment's damage, which breaks every
    /// entry naming it, not as the entry's own pack's.
    static func namingSegment<T>(of record: EntryRecord, in root: StoreRoot, _ body: () throws -> T) throws -> T {
        do { return try root.noting(damageOf: record, body) } catch let error as StoreError {
            guard let name = record.segment, record.blob(namedBy: error) == name else { throw error }
            throw DamagedSegment(name: name, error: error)
        }
    }

    /// `segment=1`: the segmented entry's segment instead of its own pack.
    static func segmentFlag(_ query: Query) throws -> Bool {
        switch query["segment"] {
        case nil, "0", "false": return false
        case "1", "true": return true
        case let v?: throw APIError.badRequest("segment \"\(v.prefix(40))\": expected 0 or 1")
        }
    }

    /// `segment=1` asked of an entry stored whole.
    static func notSegmented(_ record: EntryRecord) -> APIError {
        APIError(status: .notFound, code: "not_found", message: "entry \(record.id.prefix(16)) is stored whole: it has no segment")
    }

    /// The kvsnap's entity tag: the content id, the pack it is decoded from (compaction may
    /// re-pack an entry, changing the bytes) and the representation asked for.
    static func snapshotTag(_ r: EntryRecord, _ o: FetchOptions) -> String {
        "\"\(r.id).\(r.blob).\(o.dtype.rawValue)\(o.expand ? ".expanded" : "")\(o.prefix ? ".prefix" : "")\""
    }

    /// `If-Match` or `If-Range` holds `tag` by strong comparison (or `*` for If-Match): a weak
    /// tag never names these exact bytes.
    static func matchesStrong(_ header: String, _ tag: String) -> Bool {
        header.split(separator: ",").contains { t in
            let t = t.trimmingCharacters(in: .whitespaces)
            return t == "*" || t == tag
        }
    }

    /// `If-None-Match` holds `tag` (or `*`).
    static func matches(_ header: String?, _ tag: String) -> Bool {
        guard let header else { return false }
        return header.split(separator: ",").contains { t in
            let t = t.trimmingCharacters(in: .whitespaces)
            return t == "*" || t == tag || t == "W/" + tag
        }
    }
}

/// A pack header as `/layout` answers it: the file's header, except that the entry's
/// fidelity, a JSON document the pack stores as a string, is the JSON object itself.
struct LayoutHeader: Encodable {
    var header: PackHeader
    init(_ header: PackHeader) { self.header = header }

    enum Key: String, CodingKey {
        case format, metadata, compression, layers, entry, seq_len, kv_heads, head_dim, v_head_dim, input_dtype, segment
        case id, bytes_in, created_at, fidelity
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        let h = header
        try c.encode(h.format, forKey: .format)
        try c.encode(h.metadata, forKey: .metadata)
        try c.encode(h.seqLen, forKey: .seq_len)
        try c.encode(h.kvHeads, forKey: .kv_heads)
        try c.encode(h.headDim, forKey: .head_dim)
        try c.encode(h.vHeadDim, forKey: .v_head_dim)
        try c.encode(h.inputDType, forKey: .input_dtype)
        try c.encode(h.compression, forKey: .compression)
        try c.encode(h.layers, forKey: .layers)
        try c.encodeIfPresent(h.segment, forKey: .segment)
        guard let entry = h.entry else { return }
        var e = c.nestedContainer(keyedBy: Key.self, forKey: .entry)
        try e.encode(entry.id, forKey: .id)
        try e.encode(entry.bytesIn, forKey: .bytes_in)
        try e.encode(entry.createdAt, forKey: .created_at)
        try e.encodeIfPresent(entry.fidelity.flatMap { JSONValue(json: $0) }, forKey: .fidelity)
    }
}

/// A file opened once and read by offset; the descriptor stays valid if compaction unlinks it.
final class ReadOnlyFile: @unchecked Sendable {
    let path: String
    let size: Int
    /// The file opened, as it was when opened.
    let identity: FileIdentity
    private let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.io(path: path, operation: "open", errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw StoreError.io(path: path, operation: "stat", errno: e)
        }
        size = Int(st.st_size)
        identity = FileIdentity(st)
    }

    deinit { close(fd) }

    func read(at offset: Int, count: Int) throws -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count)
        let n = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
            var done = 0
            while done < count {
                let r = pread(fd, out.baseAddress! + done, count - done, off_t(offset + done))
                if r < 0 && errno == EINTR { continue }
                guard r > 0 else { throw StoreError.io(path: path, operation: "read", errno: r == 0 ? EIO : errno) }
                done += r
            }
            return done
        }
        precondition(n == count)
        return buffer
    }
}
