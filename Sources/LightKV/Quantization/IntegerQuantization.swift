/// Settings of an integer quantizer: bits per code, group size, and which entries stay F16.
///
/// Spelled in a policy as `int<bits>[g<group>][s<sinks>][m<size>][t<0|1>][a<percent>][r<0|1>]`, settings in that
/// order, each optional (docs/DESIGN.md, "Policy spelling"):
///
/// ```swift
/// try IntegerQuantization(token: "int4g64")      // 4 bits, groups of 64, KeepRule.standard
/// try IntegerQuantization(token: "int2s0m0t0")   // 2 bits, groups of 32, nothing kept
/// ```
public struct IntegerQuantization: Sendable, Equatable {
    /// 8, 4 or 2.
    public var bits: Int
    /// Tokens per key group, channels per value group: a positive power of two.
    public var group: Int
    public var keep: KeepRule
    /// Rotate each quantized key row by a Hadamard transform first (`HadamardRotation`;
    /// undone on decode). Used where the head dimension is a power of two.
    public var rotateKeys: Bool

    public static let defaultGroup = 32
    public static let defaultRotateKeys = false
    public static let allowedBits = [8, 4, 2]

    public init(bits: Int, group: Int = IntegerQuantization.defaultGroup, keep: KeepRule = .standard,
                rotateKeys: Bool = IntegerQuantization.defaultRotateKeys) {
        precondition(Self.allowedBits.contains(bits), "bits must be 8, 4 or 2")
        precondition(group > 0 && group & (group - 1) == 0, "group must be a positive power of two")
        self.bits = bits; self.group = group; self.keep = keep; self.rotateKeys = rotateKeys
    }

    /// Largest code, `2^bits - 1`.
    public var levels: Int { (1 << bits) - 1 }

    /// The block scheme name: `int8`, `int4` or `int2`.
    public var scheme: String { "int\(bits)" }

    /// Parses a policy part; nil when it does not start with `int`.
    public init?(token: String) throws(PolicyError) {
        guard token.hasPrefix("int") else { return nil }
        func bad(_ why: String) -> PolicyError { .badPart(part: token, in: token, why: why) }
        var rest = Substring(token.dropFirst(3))
        func number(after letter: String) throws(PolicyError) -> Int {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, digits.count <= 9, let n = Int(digits) else {
                throw bad("\"\(letter)\" needs a number")
            }
            rest = rest.dropFirst(digits.count)
            return n
        }
        let b = try number(after: "int")
        guard Self.allowedBits.contains(b) else { throw bad("bits must be 8, 4 or 2, not \(b)") }
        var group = Self.defaultGroup
        var keep = KeepRule.standard
        var rotate = Self.defaultRotateKeys
        var order = ["g", "s", "m", "t", "a", "r"]
        while let letter = rest.first {
            let l = String(letter)
            guard let at = order.firstIndex(of: l) else {
                throw bad(["g", "s", "m", "t", "a", "r"].contains(l)
                          ? "setting \"\(l)\" given twice or out of order (order: g, s, m, t, a, r)"
                          : "unknown setting \"\(l)\" (known: g<group>, s<sinks>, m<min size>, t<0|1>, a<percent>, r<0|1>)")
            }
            order.removeFirst(at + 1)
            rest = rest.dropFirst()
            let n = try number(after: l)
            switch l {
            case "g":
                guard n > 0, n & (n - 1) == 0 else { throw bad("group must be a positive power of two, not \(n)") }
                group = n
            case "s": keep.sinks = n
            case "m": keep.minSize = n
            case "a":
                guard n <= 100 else { throw bad("a takes a percentage of vision entries kept exact, 0 to 100, not \(n)") }
                keep.attended = n
            case "r":
                guard n <= 1 else { throw bad("r takes 0 (keys as they are) or 1 (Hadamard-rotated keys), not \(n)") }
                rotate = n == 1
            default:
                guard n <= 1 else { throw bad("t takes 0 (quantize text) or 1 (keep text), not \(n)") }
                keep.text = n == 1
            }
        }
        self.init(bits: b, group: group, keep: keep, rotateKeys: rotate)
    }

    /// Canonical spelling: bits and group always, keep settings where they differ from the default.
    public var name: String {
        var s = "int\(bits)g\(group)"
        let d = KeepRule.standard
        if keep.sinks != d.sinks { s += "s\(keep.sinks)" }
        if keep.minSize != d.minSize { s += "m\(keep.minSize)" }
        if keep.text != d.text { s += "t\(keep.text ? 1 : 0)" }
        if keep.attended != d.attended { s += "a\(keep.attended)" }
        if rotateKeys != Self.defaultRotateKeys { s += "r\(rotateKeys ? 1 : 0)" }
        return s
    }
}
