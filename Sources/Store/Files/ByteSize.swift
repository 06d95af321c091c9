/// A byte count written the way people write budgets: `1234`, `500MB`, `50GB`, `1.5TiB`.
///
/// Decimal units (KB, MB, GB, TB = powers of 1000) and binary units (KiB, MiB, GiB, TiB
/// = powers of 1024); `B` or no unit means bytes. Case-insensitive, spaces allowed.
public struct ByteSize: Sendable, Equatable, CustomStringConvertible {
    public var bytes: Int

    public init(bytes: Int) { self.bytes = bytes }

    /// Nil when `text` is not a non-negative number with a known unit.
    public init?(parsing text: String) {
        let t = text.replacingOccurrences(of: " ", with: "").lowercased()
        let digits = t.prefix { $0.isNumber || $0 == "." }
        let unit = t.dropFirst(digits.count)
        let units: [String: Double] = [
            "": 1, "b": 1,
            "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
            "kib": 1024, "mib": 1_048_576, "gib": 1_073_741_824, "tib": 1_099_511_627_776,
        ]
        guard let number = Double(digits), number >= 0, let scale = units[String(unit)] else { return nil }
        let value = number * scale
        guard value < 9e18 else { return nil }
        bytes = Int(value)
    }

    public var description: String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
        if unit == 0 { return "\(bytes) B" }
        let rounded = (value * 10).rounded() / 10
        return "\(rounded) \(units[unit])"
    }
}
