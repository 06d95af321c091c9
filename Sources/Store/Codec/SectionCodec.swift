import CLZ4
import CZstd
import LightKV

/// Compresses and decompresses one pack section with the codec a policy names.
public enum SectionCodec {
    /// The compressed form of `raw`.
    public static func compress(_ raw: UnsafeRawBufferPointer, codec: CodecSpec) -> [UInt8] {
        switch codec {
        case .zstd(let level):
            let bound = ZSTD_compressBound(raw.count)
            return [UInt8](unsafeUninitializedCapacity: bound) { out, n in
                let written = ZSTD_compress(out.baseAddress, bound, raw.baseAddress, raw.count, Int32(level))
                precondition(ZSTD_isError(written) == 0, "zstd: \(String(cString: ZSTD_getErrorName(written)))")
                n = written
            }
        case .lz4:
            precondition(raw.count <= Int(LZ4_MAX_INPUT_SIZE), "section of \(raw.count) bytes exceeds LZ4's limit")
            let bound = Int(LZ4_compressBound(Int32(raw.count)))
            return [UInt8](unsafeUninitializedCapacity: bound) { out, n in
                let src = raw.baseAddress?.assumingMemoryBound(to: CChar.self)
                let dst = UnsafeMutableRawPointer(out.baseAddress!).assumingMemoryBound(to: CChar.self)
                n = Int(LZ4_compress_default(src, dst, Int32(raw.count), Int32(bound)))
            }
        }
    }

    /// Decompresses exactly `rawLength` bytes into `destination`; nil when the stored bytes
    /// do not decode to that length.
    public static func decompress(
        _ stored: UnsafeRawBufferPointer, codec: String, rawLength: Int, into destination: UnsafeMutableRawPointer
    ) -> String? {
        switch codec {
        case "zstd":
            let n = ZSTD_decompress(destination, rawLength, stored.baseAddress, stored.count)
            if ZSTD_isError(n) != 0 { return "zstd: \(String(cString: ZSTD_getErrorName(n)))" }
            return n == rawLength ? nil : "zstd produced \(n) bytes, expected \(rawLength)"
        case "lz4":
            let n = LZ4_decompress_safe(
                stored.baseAddress?.assumingMemoryBound(to: CChar.self),
                destination.assumingMemoryBound(to: CChar.self), Int32(stored.count), Int32(rawLength))
            return Int(n) == rawLength ? nil : "lz4 produced \(n) bytes, expected \(rawLength)"
        case "none":
            guard stored.count == rawLength else { return "stored \(stored.count) bytes, expected \(rawLength)" }
            if rawLength > 0 { destination.copyMemory(from: stored.baseAddress!, byteCount: rawLength) }
            return nil
        default:
            return "unknown codec \"\(codec)\""
        }
    }

    /// The descriptor fields for a codec.
    public static func describe(_ codec: CodecSpec) -> (name: String, level: Int?) {
        switch codec {
        case .zstd(let level): ("zstd", level)
        case .lz4: ("lz4", nil)
        }
    }
}
