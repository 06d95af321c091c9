/// Why a synthetic snapshot cannot be built, each case naming the offending field and value.
public enum SynthError: Error, Equatable, CustomStringConvertible {
    /// A preset name that `SynthSpec.preset(named:)` does not know.
    case unknownPreset(String)
    /// A spec field whose value is out of range.
    case badField(field: String, value: String, problem: String)

    public var description: String {
        switch self {
        case .unknownPreset(let name):
            "unknown synth preset \"\(name)\" (known: \(SynthSpec.presetNames.joined(separator: ", ")))"
        case .badField(let field, let value, let problem):
            "synth \(field) = \(value): \(problem)"
        }
    }
}
