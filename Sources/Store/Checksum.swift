import CXXHash

/// XXH3 checksums of section and header bytes.
public enum Checksum {
    public static func xxh3(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        XXH3_64bits(bytes.baseAddress, bytes.count)
    }

    /// XXH3-64 of the concatenation of `parts`, without concatenating them.
    public static func xxh3(_ parts: [UnsafeRawBufferPointer]) -> UInt64 {
        let state = XXH3_createState()
        defer { XXH3_freeState(state) }
        XXH3_64bits_reset(state)
        for p in parts { XXH3_64bits_update(state, p.baseAddress, p.count) }
        return XXH3_64bits_digest(state)
    }

    public static func hex(_ value: UInt64) -> String {
        let s = String(value, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
