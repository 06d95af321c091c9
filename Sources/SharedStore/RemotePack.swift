import Foundation
import Store

/// A kvpack object read by ranges, for one layer of a blob that is not in the node's cache
/// (docs/DESIGN.md, "Two protocols"): the footer and header first, in one GET of the last
/// 64 KiB when the header fits there (a second GET when it does not), then only the
/// sections asked for.
///
/// The footer, header and each section are checked exactly as `PackReader` checks a local
/// file (the same code): the header's checksum and invariants, then each section's stored
/// and raw checksums. What a ranged read cannot check is the whole file's content name: a
/// caller holding the index row compares `header.entry?.id` with it, as `Fetcher.open` does,
/// so another entry's blob in this one's place is refused.
public struct RemotePack: Sendable {
    public let client: S3Client
    public let key: String
    public let header: PackHeader
    /// The object's size in bytes.
    public let size: Int

    /// How much of the object's end the first GET reads: the footer and, for every header
    /// seen so far, the header with it.
    static let tailLength = 64 << 10

    public init(client: S3Client, key: String) throws {
        self.client = client
        self.key = key
        let url = client.location.url(ofKey: key)
        let (tail, size) = try client.readLast(Self.tailLength, of: key)
        let footer = try tail.withUnsafeBytes { t in
            try PackFooter(UnsafeRawBufferPointer(rebasing: t[max(0, t.count - PackHeader.footerLength)...]), fileSize: size, path: url)
        }
        let tailStart = size - tail.count
        let json = footer.headerOffset >= tailStart
            ? Array(tail[(footer.headerOffset - tailStart)..<(footer.headerOffset - tailStart + footer.headerLength)])
            : try client.read(key, range: footer.headerRange).bytes
        header = try json.withUnsafeBytes { try PackHeader(json: $0, footer: footer, path: url) }
        self.size = size
    }

    /// Layer `i`'s section, read with one ranged GET, verified and decompressed.
    public func section(_ i: Int) throws -> PackReader.Section {
        let url = client.location.url(ofKey: key)
        guard header.layers.indices.contains(i) else {
            throw StoreError.io(path: url, operation: "read layer \(i) (the pack has \(header.layers.count) layers)", errno: EINVAL)
        }
        let d = header.layers[i]
        let stored = d.storedLength == 0 ? [] : try client.read(key, range: d.offset..<(d.offset + d.storedLength)).bytes
        return try stored.withUnsafeBytes { bytes in
            try PackReader.checkStored(bytes, layer: i, of: header, path: url)
            return try PackReader.decompress(bytes, layer: i, of: header, path: url)
        }
    }
}
