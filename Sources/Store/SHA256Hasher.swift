import CCrypto

/// Incremental SHA-256 (OpenSSL; uses the CPU's SHA extensions where present).
public struct SHA256Hasher {
    private var context = SHA256_CTX()

    public init() { SHA256_Init(&context) }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        if bytes.count > 0 { SHA256_Update(&context, bytes.baseAddress, bytes.count) }
    }

    public mutating func update(_ text: String) {
        var t = text
        t.withUTF8 { update(UnsafeRawBufferPointer($0)) }
    }

    public mutating func finish() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        SHA256_Final(&digest, &context)
        return digest
    }

    public static func digest(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var h = SHA256Hasher()
        h.update(bytes)
        return h.finish()
    }
}

extension [UInt8] {
    public var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        for b in self { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
