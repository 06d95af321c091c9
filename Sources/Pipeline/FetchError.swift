/// A fetch that cannot be served as asked.
public enum FetchError: Error, CustomStringConvertible {
    case cannotExpand(layer: Int, problem: String)
    /// F16 output asked for an entry whose values go beyond F16's range.
    case exceedsF16(layer: Int, part: String)

    public var description: String {
        switch self {
        case .cannotExpand(let layer, let problem): "--expand: layer \(layer): \(problem)"
        case .exceedsF16(let layer, let part):
            "layer \(layer) \(part) hold values beyond F16's ±65504: fetch with --dtype bf16 or --dtype f32"
        }
    }
}
