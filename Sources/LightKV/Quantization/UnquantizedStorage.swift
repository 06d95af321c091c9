/// The dtype a reduced but unquantized layer is stored in.
///
/// F16 and BF16 inputs keep their own dtype: entries the reduction left alone come back
/// bit-exact, and a BF16 cache (Qwen2.5-VL runs in BF16) never meets F16's ±65504 limit.
/// F32 inputs are stored in F16 when every value fits it, else in BF16, so no value ever
/// becomes infinite.
public enum UnquantizedStorage {
    public static let f16Max: Float = 65504

    public static func dtype(input: DType, keys: [Float], values: [Float]) -> DType {
        switch input {
        case .f16, .bf16: return input
        case .f32, .i32: return fitsF16(keys) && fitsF16(values) ? .f16 : .bf16
        }
    }

    /// Largest magnitude a quantized block takes: half of F16's range, so a group's zero
    /// point plus its rounded-up scale times the top code still decodes to a finite F16.
    public static let quantizableMax: Float = 32768

    /// True when every value's magnitude is at most `limit` (`quantizableMax` by default).
    public static func fitsQuantization(_ values: [Float], limit: Float = quantizableMax) -> Bool { peak(values) <= limit.bitPattern }

    /// True when every value's magnitude is at most F16's largest finite value.
    static func fitsF16(_ values: [Float]) -> Bool { peak(values) <= f16Max.bitPattern }

    /// Largest magnitude as bits (compared as magnitude bits, a loop the compiler
    /// vectorises; inputs are finite).
    private static func peak(_ values: [Float]) -> UInt32 {
        var peak: UInt32 = 0
        values.withUnsafeBufferPointer { v in
            v.withMemoryRebound(to: UInt32.self) { bits in
                for b in bits { peak = max(peak, b & 0x7FFF_FFFF) }
            }
        }
        return peak
    }
}
