/// A fetch that cannot be served as asked.
public enum FetchError: Error, CustomStringConvertible {
    case cannotExpand(layer: Int, problem: String)

    public var description: String {
        switch self {
        case .cannotExpand(let layer, let problem): "--expand: layer \(layer): \(problem)"
        }
    }
}
