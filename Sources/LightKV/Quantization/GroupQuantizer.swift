/// One way of cutting a `[heads, count, dim]` block into quantization groups.
///
/// Keys and values differ only in which elements share a scale and zero point
/// (`KeyQuantizer`: G tokens of one channel; `ValueQuantizer`: G channels of one token).
/// Both work on the block's quantized entries only (`rows`: their indices in the layer,
/// ascending); entries kept in F16 are not part of any group.
protocol GroupQuantizer {
    /// Number of groups (scale/zero pairs) for `header`; the same number for every head.
    static func parameterCount(_ header: QuantizedBlockHeader) -> Int

    /// Minimum and maximum of every group of head `h`, in parameter order.
    static func ranges(_ source: UnsafePointer<Float>, header: QuantizedBlockHeader, rows: [Int], head h: Int,
                       mins: UnsafeMutablePointer<Float>, maxs: UnsafeMutablePointer<Float>)

    /// Codes of head `h`, one byte each, row `r` (at `r·dim`) holding entry `rows[r]`;
    /// `zero` and `inverse` are that head's parameters.
    static func codes(_ source: UnsafePointer<Float>, header: QuantizedBlockHeader, rows: [Int], head h: Int,
                      zero: UnsafePointer<Float>, inverse: UnsafePointer<Float>, into codes: UnsafeMutablePointer<UInt8>)

    /// Dequantizes row `r` of head `h` (unpacked codes) into elements `index..<index+dim` of `output`.
    static func dequantizeRow<O: DequantizedOutput>(
        _ codes: UnsafePointer<UInt8>, header: QuantizedBlockHeader, head h: Int, row r: Int,
        scale: UnsafePointer<Float>, zero: UnsafePointer<Float>, output: UnsafeMutableRawPointer, at index: Int, as: O.Type)
}
