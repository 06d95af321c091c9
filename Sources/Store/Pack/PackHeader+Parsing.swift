import Foundation

extension PackHeader {
    /// Parses the header bytes a `footer` points at and checks every invariant of
    /// docs/FORMAT.md that the header alone can show: its checksum, the format, the shape
    /// fields' bounds, and sections laid out from byte 8 to the header without gaps.
    public init(json: UnsafeRawBufferPointer, footer: PackFooter, path: String) throws {
        guard json.count == footer.headerLength, Checksum.xxh3(json) == footer.headerChecksum else {
            throw StoreError.corrupt(path: path, problem: "header checksum mismatch")
        }
        let header: PackHeader
        do { header = try JSONDecoder().decode(PackHeader.self, from: Data(json)) } catch {
            throw StoreError.corrupt(path: path, problem: "header JSON: \(error)")
        }
        guard header.format == 1 || header.format == 2 else { throw StoreError.corrupt(path: path, problem: "format \(header.format) is not supported") }
        if let segment = header.segment {
            guard (1...header.seqLen).contains(segment.length) else {
                throw StoreError.corrupt(path: path, problem: "segment length \(segment.length) is outside 1...seq_len (\(header.seqLen))")
            }
            if let name = segment.name, !(name.count == 32 && name.allSatisfy(\.isHexDigit)) {
                throw StoreError.corrupt(path: path, problem: "segment name \"\(name.prefix(40))\" is not a blob name")
            }
        }
        // Format 2 is exactly a segmented entry's part; a segment is format 1.
        guard (header.format == 2) == header.isSegmented else {
            throw StoreError.corrupt(path: path, problem: header.format == 2 ? "format 2 without the segment it continues" : "format 1 naming a segment")
        }
        for (field, value) in [("kv_heads", header.kvHeads), ("head_dim", header.headDim), ("v_head_dim", header.vHeadDim)]
        where !(1...(1 << 16)).contains(value) {
            throw StoreError.corrupt(path: path, problem: "header \(field) \(value) is outside 1...65536")
        }
        // Bounds keep every product of shape fields (heads · entries · dim · 4 < 2^58) from overflowing.
        guard (0...(1 << 24)).contains(header.seqLen) else {
            throw StoreError.corrupt(path: path, problem: "header seq_len \(header.seqLen) is outside 0...2^24")
        }
        for (i, d) in header.layers.enumerated() where !(0...header.seqLen).contains(d.count) {
            throw StoreError.corrupt(path: path, problem: "layer \(i): count \(d.count) is outside 0...seq_len (\(header.seqLen))")
        }
        for (i, d) in header.layers.enumerated() {
            if let p = d.prefix, !(0...d.count).contains(p) {
                throw StoreError.corrupt(path: path, problem: "layer \(i): prefix \(p) is outside 0...count (\(d.count))")
            }
        }
        if let ids = header.inputIDs {
            guard ids.dtype == "I32" || ids.dtype == "I64" else {
                throw StoreError.corrupt(path: path, problem: "input_ids dtype \"\(ids.dtype.prefix(16))\" is not I32 or I64")
            }
            guard ids.ids.count == header.seqLen else {
                throw StoreError.corrupt(path: path, problem: "input_ids holds \(ids.ids.count) ids, seq_len is \(header.seqLen)")
            }
        }
        let end = footer.headerOffset
        var next = 8
        for (i, d) in header.layers.enumerated() {
            let where_ = "layer \(i)"
            guard d.offset == next, d.storedLength >= 0, d.storedLength <= end - d.offset else {
                throw StoreError.corrupt(path: path, problem: "\(where_): section at \(d.offset)+\(d.storedLength) is not where the previous one ended (\(next)) or runs past the header")
            }
            // Bounded before any arithmetic, so a crafted header cannot overflow a sum.
            let limit = 1 << 48
            guard d.count >= 0, d.keys.length >= 0, d.values.length >= 0, d.members >= 0,
                  [d.count, d.keys.length, d.values.length, d.members, d.rawLength].allSatisfy({ $0 < limit }),
                  d.rawLength == d.keys.length + d.values.length + 8 * d.count + 4 * d.members else {
                throw StoreError.corrupt(path: path, problem: "\(where_): raw_length \(d.rawLength) does not match its blocks and count \(d.count)")
            }
            next = d.offset + d.storedLength
        }
        guard next == end else { throw StoreError.corrupt(path: path, problem: "sections end at \(next) but the header starts at \(end)") }
        self = header
    }
}
