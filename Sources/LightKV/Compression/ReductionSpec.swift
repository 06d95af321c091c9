/// Which vision-token reduction a policy applies, with its settings.
public enum ReductionSpec: Sendable, Equatable {
    /// Every entry kept as it is.
    case none

    /// Parses one `+`-separated part of a policy name; nil when the part is not a reduction.
    public init?(token: String) throws(PolicyError) {
        switch token {
        case "none": self = .none
        default: return nil
        }
    }

    /// The canonical spelling of this part.
    public var name: String {
        switch self {
        case .none: "none"
        }
    }

    /// A fresh compressor for one snapshot.
    public func makeCompressor() -> any CacheCompressor {
        switch self {
        case .none: IdentityCompressor()
        }
    }
}
