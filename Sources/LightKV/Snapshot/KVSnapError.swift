/// Everything that can be wrong with a kvsnap file, each with a message naming the problem.
public enum KVSnapError: Error, Equatable, CustomStringConvertible {
    case truncated(String)
    case headerTooLong(length: UInt64, fileSize: Int)
    case badJSON(String)
    case badTensor(name: String, problem: String)
    case overlappingData(String, String)
    case missingTensor(String)
    case shapeMismatch(String)
    case badMetadata(key: String, problem: String)
    case badSpans(String)
    case nonFinite(tensor: String)
    /// The header holds more than `KVSnapLimits` allows.
    case overLimit(what: String, limit: Int)

    /// Every value that may come from the input is cut (`Echoed`).
    public var description: String {
        switch self {
        case .truncated(let what): "file is truncated: \(Echoed.cut(what))"
        case .headerTooLong(let n, let size): "header length \(n) runs past the end of the \(size)-byte file"
        case .badJSON(let what): "header is not valid safetensors JSON: \(Echoed.cut(what))"
        case .badTensor(let name, let problem): "tensor \(Echoed.cut(name)): \(Echoed.cut(problem))"
        case .overlappingData(let a, let b): "data of tensors \(Echoed.cut(a)) and \(Echoed.cut(b)) overlap"
        case .missingTensor(let name): "missing tensor \(Echoed.cut(name))"
        case .shapeMismatch(let what): "shape mismatch: \(Echoed.cut(what))"
        case .badMetadata(let key, let problem): "metadata \(Echoed.cut(key)): \(Echoed.cut(problem))"
        case .badSpans(let what): "kvsnap.spans: \(Echoed.cut(what))"
        case .nonFinite(let name): "tensor \(Echoed.cut(name)) holds NaN or Inf"
        case .overLimit(let what, let limit): "\(what): more than the limit of \(limit) (docs/DESIGN.md, \"Limits\")"
        }
    }
}
