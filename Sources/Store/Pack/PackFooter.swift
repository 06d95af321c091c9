/// The 32 bytes that end a kvpack file and say where its header lies (docs/FORMAT.md): the
/// one fixed place a reader starts from, whether it maps the file or reads ranges of a
/// remote object.
public struct PackFooter: Sendable, Equatable {
    public var headerOffset: Int
    public var headerLength: Int
    /// XXH3-64 of the header bytes.
    public var headerChecksum: UInt64

    /// Parses the footer (`bytes`, the last `PackHeader.footerLength` bytes of a file of
    /// `fileSize` bytes) and checks that the header it points at ends where the footer
    /// starts and is not over `PackHeader.maximumLength`.
    public init(_ bytes: UnsafeRawBufferPointer, fileSize: Int, path: String) throws {
        guard fileSize >= PackHeader.magic.count + PackHeader.footerLength, bytes.count == PackHeader.footerLength else {
            throw StoreError.corrupt(path: path, problem: "\(fileSize) bytes is too short for a kvpack file")
        }
        guard Array(bytes[24..<32]) == PackHeader.footerMagic else {
            throw StoreError.corrupt(path: path, problem: "bad footer magic (truncated file?)")
        }
        let offset = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        let length = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        let footer = fileSize - PackHeader.footerLength
        guard offset >= 8, length <= UInt64(fileSize), offset + length == UInt64(footer) else {
            throw StoreError.corrupt(path: path, problem: "footer says header at \(offset) with length \(length), which does not end at the footer (\(footer))")
        }
        // Headers hold the input's metadata (bounded by KVSnapLimits) and a descriptor per
        // layer: far below this, so a crafted length cannot make the decoder allocate much.
        guard length <= UInt64(PackHeader.maximumLength) else {
            throw StoreError.corrupt(path: path, problem: "header of \(length) bytes is over the limit of \(PackHeader.maximumLength)")
        }
        headerOffset = Int(offset)
        headerLength = Int(length)
        headerChecksum = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
    }

    /// Where the header's bytes lie in the file.
    public var headerRange: Range<Int> { headerOffset..<(headerOffset + headerLength) }
}
