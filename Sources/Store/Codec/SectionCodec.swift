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

    /// The compressed form of the concatenation of `parts`. zstd streams them into one frame
    /// (with the total size pledged, as the one-shot call records it), so a large layer's
    /// keys and values are never copied into one buffer first; lz4 needs them contiguous.
    public static func compress(_ parts: [UnsafeRawBufferPointer], codec: CodecSpec) -> [UInt8] {
        let total = parts.reduce(0) { $0 + $1.count }
        guard case .zstd(let level) = codec else {
            var joined = [UInt8](); joined.reserveCapacity(total)
            for p in parts { joined.append(contentsOf: p) }
            return joined.withUnsafeBytes { compress($0, codec: codec) }
        }
        let context = ZSTD_createCCtx()
        defer { ZSTD_freeCCtx(context) }
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, Int32(level))
        ZSTD_CCtx_setPledgedSrcSize(context, UInt64(total))
        let bound = ZSTD_compressBound(total)
        return [UInt8](unsafeUninitializedCapacity: bound) { out, n in
            var output = ZSTD_outBuffer(dst: out.baseAddress, size: bound, pos: 0)
            for (i, p) in parts.enumerated() {
                var input = ZSTD_inBuffer(src: p.baseAddress, size: p.count, pos: 0)
                let last = i == parts.count - 1
                while true {
                    let left = ZSTD_compressStream2(context, &output, &input, last ? ZSTD_e_end : ZSTD_e_continue)
                    precondition(ZSTD_isError(left) == 0, "zstd: \(String(cString: ZSTD_getErrorName(left)))")
                    if last ? left == 0 : input.pos == input.size { break }
                }
            }
            n = output.pos
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
