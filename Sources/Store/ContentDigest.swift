import CXXHash

/// XXH3-128 over a stream of bytes: the content name of a blob.
public final class ContentDigest {
    private let state: OpaquePointer

    public init() {
        state = XXH3_createState()
        XXH3_128bits_reset(state)
    }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        XXH3_128bits_update(state, bytes.baseAddress, bytes.count)
    }

    /// 32 lowercase hex digits.
    public var hex: String {
        let h = XXH3_128bits_digest(state)
        return Checksum.hex(h.high64) + Checksum.hex(h.low64)
    }

    deinit { XXH3_freeState(state) }

    /// The content name of a whole mapped file, read in chunks whose pages are dropped after
    /// hashing, so memory stays flat.
    public static func name(of file: MappedFile) -> String {
        let digest = ContentDigest()
        let chunk = 8 << 20
        var offset = 0
        while offset < file.bytes.count {
            let end = min(offset + chunk, file.bytes.count)
            digest.update(UnsafeRawBufferPointer(rebasing: file.bytes[offset..<end]))
            file.release(offset..<end)
            offset = end
        }
        return digest.hex
    }
}
