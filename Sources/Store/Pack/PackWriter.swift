import Foundation
import LightKV

/// Streams a kvpack file: the magic, then sections as they are ready, then header and footer.
///
/// Sections must be appended in layer order; the caller may compress them on other threads
/// with `PackWriter.seal` and append the results in order.
public final class PackWriter {
    /// A section compressed and checksummed, ready to append.
    public struct SealedSection: Sendable {
        public var stored: [UInt8]
        public var descriptor: SectionDescriptor
    }

    private let file: AtomicFile
    private var descriptors: [SectionDescriptor] = []
    private var offset: Int
    /// XXH3-128 state over everything written, which names the blob.
    private var digest = ContentDigest()

    /// `segmented`: the pack is a segmented entry's own part (format 2, its own magic).
    public init(file: AtomicFile, segmented: Bool = false) throws {
        self.file = file
        offset = PackHeader.magic.count
        try write(segmented ? PackHeader.segmentedMagic : PackHeader.magic)
    }

    /// Lays out, compresses and checksums one layer's section (thread-safe; no I/O).
    /// `prefixEnd`: the shareable prefix's end, to record how many entries lie before it.
    public static func seal(_ layer: PackedLayer, codec: CodecSpec, prefixEnd: Int? = nil) -> SealedSection {
        let keyLength = layer.keys.bytes.count, valueLength = layer.values.bytes.count
        let members = layer.memberPositions ?? []
        // The raw section is keys, values, then positions, sizes and members; it is hashed and
        // compressed part by part, never assembled (a large layer would be copied once more).
        var tail = [UInt8](); tail.reserveCapacity(8 * layer.count + 4 * members.count)
        for list in [layer.positions, layer.sizes, members] {
            for v in list { withUnsafeBytes(of: v.littleEndian) { tail.append(contentsOf: $0) } }
        }
        let rawLength = keyLength + valueLength + tail.count
        let (rawChecksum, stored) = layer.keys.bytes.withUnsafeBytes { k in
            layer.values.bytes.withUnsafeBytes { v in
                tail.withUnsafeBytes { t in (Checksum.xxh3([k, v, t]), SectionCodec.compress([k, v, t], codec: codec)) }
            }
        }
        let (name, level) = SectionCodec.describe(codec)
        var descriptor = SectionDescriptor(
            count: layer.count, offset: 0, storedLength: stored.count, rawLength: rawLength,
            codec: name, level: level, checksum: Checksum.hex(stored.withUnsafeBytes { Checksum.xxh3($0) }),
            rawChecksum: Checksum.hex(rawChecksum),
            keys: .init(encoding: layer.keys.encoding, length: keyLength),
            values: .init(encoding: layer.values.encoding, length: valueLength), members: members.count)
        if let prefixEnd { descriptor.prefix = layer.positions.prefix { Int($0) < prefixEnd }.count }
        return SealedSection(stored: stored, descriptor: descriptor)
    }

    public func append(_ section: SealedSection) throws {
        var d = section.descriptor
        d.offset = offset
        try write(section.stored)
        offset += section.stored.count
        descriptors.append(d)
    }

    /// Writes header and footer; returns the header and the blob's content name.
    public func finish(
        metadata: [String: String], seqLen: Int, kvHeads: Int, headDim: Int, vHeadDim: Int,
        inputDType: DType, compression: [String: String], entry: PackEntry? = nil, inputIDs: PackInputIDs? = nil,
        segment: PackSegment? = nil
    ) throws -> (header: PackHeader, contentName: String) {
        let header = PackHeader(format: segment?.name == nil ? 1 : 2, metadata: metadata, seqLen: seqLen, kvHeads: kvHeads,
                                headDim: headDim, vHeadDim: vHeadDim, inputDType: inputDType.rawValue, compression: compression,
                                layers: descriptors, entry: entry, inputIDs: inputIDs, segment: segment)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json: [UInt8]
        do { json = Array(try encoder.encode(header)) } catch {
            throw StoreError.corrupt(path: file.tempPath, problem: "header could not be encoded: \(error)")
        }
        var footer = [UInt8](repeating: 0, count: PackHeader.footerLength)
        footer.withUnsafeMutableBytes { f in
            f.storeBytes(of: UInt64(offset).littleEndian, toByteOffset: 0, as: UInt64.self)
            f.storeBytes(of: UInt64(json.count).littleEndian, toByteOffset: 8, as: UInt64.self)
            f.storeBytes(of: json.withUnsafeBytes { Checksum.xxh3($0) }.littleEndian, toByteOffset: 16, as: UInt64.self)
        }
        footer.replaceSubrange(24..<32, with: PackHeader.footerMagic)
        try write(json)
        try write(footer)
        return (header, digest.hex)
    }

    private func write(_ bytes: [UInt8]) throws {
        bytes.withUnsafeBytes { digest.update($0) }
        try file.write(bytes)
    }
}
