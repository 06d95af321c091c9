/// A named compression policy: reduction, then quantization, then the pack codec.
///
/// Spelled as parts joined by `+`, in any order, each part optional:
/// `none`, `lightkv`, `lightkv+int8`, `lightkv+int4g64+zstd9`, `int8+lz4`.
public struct Policy: Sendable, Equatable {
    public var reduction: ReductionSpec
    public var quantization: QuantSpec
    public var codec: CodecSpec

    public init(reduction: ReductionSpec = .none, quantization: QuantSpec = .none, codec: CodecSpec = .zstd(level: 3)) {
        self.reduction = reduction; self.quantization = quantization; self.codec = codec
    }

    public init(parsing text: String) throws(PolicyError) {
        do { try self.init(parts: text) } catch .badPart(let part, _, let why) {
            // Name the whole policy, whichever part parser noticed the problem.
            throw .badPart(part: part, in: text, why: why)
        }
    }

    private init(parts text: String) throws(PolicyError) {
        self.init()
        var seen: Set<String> = []
        let parts = text.split(separator: "+", omittingEmptySubsequences: false).map(String.init)
        for part in parts {
            guard !part.isEmpty else { throw .badPart(part: part, in: text, why: "empty part") }
            if let r = try ReductionSpec(token: part) {
                guard seen.insert("reduction").inserted || r == .none else { throw .badPart(part: part, in: text, why: "a second reduction") }
                if r != .none { reduction = r }
            } else if let q = try QuantSpec(token: part) {
                guard seen.insert("quantization").inserted else { throw .badPart(part: part, in: text, why: "a second quantization") }
                quantization = q
            } else if let c = try CodecSpec(token: part) {
                guard seen.insert("codec").inserted else { throw .badPart(part: part, in: text, why: "a second codec") }
                codec = c
            } else {
                throw .badPart(part: part, in: text, why: "not a known reduction, quantization or codec (see `kvstore policies`)")
            }
        }
    }

    /// Canonical spelling, e.g. `lightkv+int8g32+zstd3`.
    public var name: String {
        [reduction == .none && quantization != .none ? nil : reduction.name,
         quantization == .none ? nil : quantization.name,
         codec.name].compactMap { $0 }.joined(separator: "+")
    }
}

/// A policy string that cannot be understood.
public enum PolicyError: Error, Equatable, CustomStringConvertible {
    case badPart(part: String, in: String, why: String)
    /// The policy is well formed but cannot do what it asks on this input (for example keep
    /// 2% of 64 vision tokens in one image): refused rather than silently kept otherwise.
    case unreachable(policy: String, why: String)

    public var description: String {
        switch self {
        case .badPart(let part, let text, let why): "policy \"\(text)\": part \"\(part)\": \(why)"
        case .unreachable(let policy, let why): "policy \"\(policy)\": \(why)"
        }
    }
}

/// The entropy coder applied to each pack section.
public enum CodecSpec: Sendable, Equatable, Codable {
    case zstd(level: Int)
    case lz4

    public init?(token: String) throws(PolicyError) {
        if token == "lz4" { self = .lz4; return }
        if token == "zstd" { self = .zstd(level: 3); return }
        guard token.hasPrefix("zstd") else { return nil }
        guard let level = Int(token.dropFirst(4)), (1...19).contains(level) else {
            throw .badPart(part: token, in: token, why: "zstd level must be 1 to 19")
        }
        self = .zstd(level: level)
    }

    public var name: String {
        switch self {
        case .zstd(let level): "zstd\(level)"
        case .lz4: "lz4"
        }
    }
}
