import Foundation
import LightKV

/// Reads a kvpack file: checks footer and header on open, and each section when it is read.
public final class PackReader: @unchecked Sendable {
    public let path: String
    public let header: PackHeader
    private let file: MappedFile

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        header = try Self.readHeader(file.bytes, path: path)
    }

    /// Bytes of the whole file.
    public var size: Int { file.bytes.count }

    /// The file read, as it was when opened.
    public var identity: FileIdentity { file.identity }

    /// The whole file, mapped (pages are dropped again as sections are read).
    public var bytes: UnsafeRawBufferPointer { file.bytes }

    /// Hands the whole file to `write` in chunks, dropping each chunk's pages once written, so
    /// a raw copy of a large blob holds one chunk, not the file, in memory.
    public func streamWhole(chunk: Int = 8 << 20, _ write: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        var offset = 0
        while offset < file.bytes.count {
            let end = min(offset + chunk, file.bytes.count)
            try write(UnsafeRawBufferPointer(rebasing: file.bytes[offset..<end]))
            file.release(offset..<end)
            offset = end
        }
    }

    /// Checks that the file is the blob an index row names: its content name (XXH3-128 of
    /// every byte) must be `expected`.
    ///
    /// Section checksums catch damage inside a file, not a whole other file put in its place
    /// (another entry's blob copied over this one is internally consistent). Read in chunks
    /// whose pages are dropped after hashing, so memory stays flat.
    public func checkContent(named expected: String) throws {
        let content = ContentDigest.name(of: file)
        guard content == expected else {
            throw StoreError.corrupt(path: path, problem: "content is \(content), the index expects \(expected) (a damaged file, or another entry's blob in its place)")
        }
    }

    private static func readHeader(_ b: UnsafeRawBufferPointer, path: String) throws -> PackHeader {
        guard b.count >= PackHeader.magic.count + PackHeader.footerLength else {
            throw StoreError.corrupt(path: path, problem: "\(b.count) bytes is too short for a kvpack file")
        }
        let magic = Array(b[0..<8])
        guard magic == PackHeader.magic || magic == PackHeader.segmentedMagic else { throw StoreError.corrupt(path: path, problem: "bad magic at offset 0") }
        let footer = try PackFooter(UnsafeRawBufferPointer(rebasing: b[(b.count - PackHeader.footerLength)...]), fileSize: b.count, path: path)
        let header = try PackHeader(json: UnsafeRawBufferPointer(rebasing: b[footer.headerRange]), footer: footer, path: path)
        guard header.format == Int(magic[7]) else {
            throw StoreError.corrupt(path: path, problem: "the magic says format \(magic[7]), the header \(header.format)")
        }
        return header
    }

    /// The stored bytes of layer `i`, checksum-verified.
    public func storedSection(_ i: Int) throws -> UnsafeRawBufferPointer {
        let d = header.layers[i]
        let stored = UnsafeRawBufferPointer(rebasing: file.bytes[d.offset..<(d.offset + d.storedLength)])
        try Self.checkStored(stored, layer: i, of: header, path: path)
        return stored
    }

    /// Layer `i`'s section, verified and decompressed.
    public func section(_ i: Int) throws -> Section {
        let d = header.layers[i]
        let stored = try storedSection(i)
        // The stored bytes are read; drop their pages so a fetch holds about one layer's worth.
        defer { file.release(d.offset..<(d.offset + d.storedLength)) }
        return try Self.decompress(stored, layer: i, of: header, path: path)
    }

    /// Checks layer `i`'s stored bytes against the checksum `header` holds for them; `stored`
    /// may come from a mapped file or from a ranged read of a remote blob.
    public static func checkStored(_ stored: UnsafeRawBufferPointer, layer i: Int, of header: PackHeader, path: String) throws {
        let d = header.layers[i]
        guard stored.count == d.storedLength, Checksum.hex(Checksum.xxh3(stored)) == d.checksum else {
            throw StoreError.corrupt(path: path, problem: "layer \(i): section checksum mismatch")
        }
    }

    /// Decompresses layer `i`'s checked stored bytes and checks what comes out.
    public static func decompress(_ stored: UnsafeRawBufferPointer, layer i: Int, of header: PackHeader, path: String) throws -> Section {
        let d = header.layers[i]
        // Every byte is written by the codec (or the section is rejected), so no zero fill.
        var problem: String?
        let raw = [UInt8](unsafeUninitializedCapacity: d.rawLength) { r, initialized in
            problem = SectionCodec.decompress(stored, codec: d.codec, rawLength: d.rawLength,
                                              into: UnsafeMutableRawPointer(r.baseAddress ?? UnsafeMutablePointer(bitPattern: 1)!))
            if problem != nil, d.rawLength > 0 { memset(r.baseAddress!, 0, d.rawLength) }
            initialized = d.rawLength
        }
        if let problem { throw StoreError.corrupt(path: path, problem: "layer \(i): \(problem)") }
        guard Checksum.hex(raw.withUnsafeBytes { Checksum.xxh3($0) }) == d.rawChecksum else {
            throw StoreError.corrupt(path: path, problem: "layer \(i): raw checksum mismatch after \(d.codec)")
        }
        let section = Section(index: i, descriptor: d, raw: raw)
        try section.check(seqLen: header.seqLen, path: path)
        return section
    }

    /// A decompressed section and views of its parts.
    public struct Section: Sendable {
        public let index: Int
        public let descriptor: SectionDescriptor
        public let raw: [UInt8]

        public var positions: [Int32] { ints(at: descriptor.positionsOffset, count: descriptor.count) }
        public var sizes: [Int32] { ints(at: descriptor.positionsOffset + 4 * descriptor.count, count: descriptor.count) }
        /// Original positions of every entry's members, when the pack tracked them.
        public var memberPositions: [Int32]? {
            descriptor.members == 0 ? nil : ints(at: descriptor.membersOffset, count: descriptor.members)
        }

        private func ints(at offset: Int, count: Int) -> [Int32] {
            raw.withUnsafeBytes { r in
                (0..<count).map { Int32(littleEndian: r.loadUnaligned(fromByteOffset: offset + 4 * $0, as: Int32.self)) }
            }
        }

        func check(seqLen: Int, path: String) throws {
            var previous: Int32 = -1
            for (p, s) in zip(positions, sizes) {
                guard p > previous, Int(p) < seqLen, s >= 1 else {
                    throw StoreError.corrupt(path: path, problem: "layer \(index): entry at position \(p) with size \(s) breaks ascending positions in [0, \(seqLen)) or sizes ≥ 1")
                }
                previous = p
            }
            if descriptor.members > 0 {
                let sizes = self.sizes
                let total = sizes.reduce(0) { $0 + Int($1) }
                guard total == descriptor.members else {
                    throw StoreError.corrupt(path: path, problem: "layer \(index): \(descriptor.members) member positions but sizes sum to \(total)")
                }
                guard memberPositions!.allSatisfy({ $0 >= 0 && Int($0) < seqLen }) else {
                    throw StoreError.corrupt(path: path, problem: "layer \(index): a member position lies outside [0, \(seqLen))")
                }
            }
        }

        /// Decodes the keys (`values: false`) or values block into `destination` as `dtype`.
        public func decode(values: Bool, heads: Int, dim: Int, to dtype: DType,
                           into destination: UnsafeMutableRawPointer, path: String) throws {
            let block = values ? descriptor.values : descriptor.keys
            let start = values ? descriptor.keys.length : 0
            let shape = BlockShape(heads: heads, count: descriptor.count, dim: dim)
            do {
                try raw.withUnsafeBytes { (r) in
                    try BlockCodec.decode(UnsafeRawBufferPointer(rebasing: r[start..<(start + block.length)]),
                                          encoding: block.encoding, elements: shape.elements, shape: shape,
                                          to: dtype, into: destination)
                }
            } catch {
                throw StoreError.corrupt(path: path, problem: "layer \(index) \(values ? "values" : "keys"): \(error)")
            }
        }

        /// The section as a float layer (for evaluation and re-packing).
        public func floatLayer(kvHeads: Int, headDim: Int, vHeadDim: Int, path: String) throws -> KVLayer {
            let n = descriptor.count
            var k = [Float](repeating: 0, count: kvHeads * n * headDim)
            var v = [Float](repeating: 0, count: kvHeads * n * vHeadDim)
            try k.withUnsafeMutableBytes { (b) in
                if let base = b.baseAddress { try decode(values: false, heads: kvHeads, dim: headDim, to: .f32, into: base, path: path) }
            }
            try v.withUnsafeMutableBytes { (b) in
                if let base = b.baseAddress { try decode(values: true, heads: kvHeads, dim: vHeadDim, to: .f32, into: base, path: path) }
            }
            return KVLayer(kvHeads: kvHeads, headDim: headDim, vHeadDim: vHeadDim, keys: k, values: v,
                           positions: positions, sizes: sizes, memberPositions: memberPositions)
        }
    }
}
