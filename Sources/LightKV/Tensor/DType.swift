/// Element types a kvsnap tensor may carry, with their safetensors names.
public enum DType: String, Sendable, CaseIterable, Codable {
    case f16 = "F16"
    case bf16 = "BF16"
    case f32 = "F32"
    case i32 = "I32"
    /// Token ids only (`input_ids`).
    case i64 = "I64"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f16, .bf16: 2
        case .f32, .i32: 4
        case .i64: 8
        }
    }

    /// True for the three floating-point types a key or value may use.
    public var isFloat: Bool { self != .i32 && self != .i64 }

    /// Parses a user-facing name such as `f16` or `BF16`.
    public init?(userName: String) {
        switch userName.lowercased() {
        case "f16", "fp16", "float16": self = .f16
        case "bf16", "bfloat16": self = .bf16
        case "f32", "fp32", "float32": self = .f32
        default: return nil
        }
    }
}
