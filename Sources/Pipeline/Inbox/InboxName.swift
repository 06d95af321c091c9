/// The names the daemon gives inputs it moves: the input's own name where it fits,
/// otherwise one shortened to fit the filesystem's limit of 255 bytes a name (NAME_MAX).
///
/// An input may have any name up to 255 bytes, but `done/` and `failed/` add to it: `.1`,
/// `.2`, … when the name is taken, and `.error.json` for the report beside a failed input.
/// A name that would grow past the limit loses the end of its stem, replaced by `~` and 8 hex
/// digits of a hash of the whole name, so long names that share a start stay distinct.
/// The original name is kept in the failure report's `file` field and in the log.
public enum InboxName {
    /// NAME_MAX on Linux filesystems.
    public static let maxBytes = 255

    /// `name` for n = 0, else `name.n`; shortened where needed so that it, plus `reserve`
    /// more bytes, fits in `maxBytes`.
    public static func numbered(_ name: String, _ n: Int, reserve: Int = 0) -> String {
        let suffix = n == 0 ? "" : ".\(n)"
        let budget = maxBytes - reserve - suffix.utf8.count
        if name.utf8.count <= budget { return name + suffix }
        let tag = "~" + hash(name)
        var stem = ""
        var bytes = 0
        for scalar in name.unicodeScalars {
            let size = String(scalar).utf8.count
            guard bytes + size <= budget - tag.utf8.count else { break }
            stem.unicodeScalars.append(scalar)
            bytes += size
        }
        return stem + tag + suffix
    }

    /// A printable UTF-8 name for bytes that are not valid UTF-8: the valid parts kept, each
    /// other byte written `%XX` (and `%` itself `%25`, so distinct names stay distinct).
    public static func escaped(_ bytes: [UInt8]) -> String {
        var out = ""
        var i = 0
        while i < bytes.count {
            let length = sequenceLength(bytes, at: i)
            if length > 0, let s = String(validating: bytes[i..<i + length], as: UTF8.self), s != "%" {
                out += s
                i += length
            } else {
                out += "%" + String(bytes[i], radix: 16, uppercase: true).leftPadded(2)
                i += 1
            }
        }
        return out
    }

    /// Length of the well-formed UTF-8 sequence starting at `i`, or 0.
    private static func sequenceLength(_ b: [UInt8], at i: Int) -> Int {
        let lead = b[i]
        let n = lead < 0x80 ? 1 : lead >> 5 == 0b110 ? 2 : lead >> 4 == 0b1110 ? 3 : lead >> 3 == 0b11110 ? 4 : 0
        guard n > 0, i + n <= b.count else { return 0 }
        return String(validating: b[i..<i + n], as: UTF8.self) == nil ? 0 : n
    }

    /// 8 hex digits of FNV-1a over the name's bytes.
    static func hash(_ name: String) -> String {
        var h: UInt32 = 2_166_136_261
        for byte in name.utf8 { h = (h ^ UInt32(byte)) &* 16_777_619 }
        return String(h, radix: 16).leftPadded(8)
    }
}

private extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
