/// The dtype a reduced but unquantized layer is stored in.
///
/// F16 and BF16 inputs keep their own dtype: entries the reduction left alone come back
/// bit-exact, and a BF16 cache (Qwen2.5-VL runs in BF16) never meets F16's ±65504 limit.
/// F32 inputs are stored in F16 when every value fits it, else in BF16 when every value
/// rounds to a finite BF16 (below 3.3961e38), else in F32, so no value ever becomes infinite.
public enum UnquantizedStorage {
    public static let f16Max: Float = 65504

    public static func dtype(input: DType, keys: [Float], values: [Float]) -> DType {
        switch input {
        case .f16, .bf16: return input
        case .f32, .i32, .i64:
            let peak = max(peak(keys), peak(values))
            return peak <= f16Max.bitPattern ? .f16 : peak < bf16RoundsFinite ? .bf16 : .f32
        }
    }

    /// Largest magnitude a quantized block takes: half of F16's range, so a group's zero
    /// point plus its rounded-up scale times the top code still decodes to a finite F16.
    public static let quantizableMax: Float = 32768

    /// True when every value's magnitude is at most `limit` (`quantizableMax` by default).
    public static func fitsQuantization(_ values: [Float], limit: Float = quantizableMax) -> Bool { peak(values) <= limit.bitPattern }

    /// Magnitudes (as F32 bits) below this round to a finite BF16: 0x7F7F8000 is halfway
    /// between BF16's largest finite value (0x7F7F, 3.3895e38) and infinity, and a tie
    /// rounds to even, which is infinity.
    static let bf16RoundsFinite: UInt32 = 0x7F7F_8000

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
