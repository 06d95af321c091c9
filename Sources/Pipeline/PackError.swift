import LightKV

/// A snapshot the policy cannot store readably; the ingest is refused and the input kept.
public enum PackError: Error, CustomStringConvertible {
    case unreadable(layer: Int, ReadBackError)

    public var description: String {
        switch self {
        case .unreadable(let layer, let e):
            "layer \(layer) \(e): refused, nothing stored (try a policy without quantization)"
        }
    }
}
