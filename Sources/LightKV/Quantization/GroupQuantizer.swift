/// One way of cutting a `[heads, count, dim]` block into quantization groups.
///
/// Keys and values differ only in which elements share a scale and zero point
/// (`KeyQuantizer`: G tokens of one channel; `ValueQuantizer`: G channels of one token).
/// Both work on the block's quantized entries only (`rows`: their indices in the layer,
/// ascending); entries kept in F16 are not part of any group.
protocol GroupQuantizer {
    /// Number of groups (scale/zero pairs) for `header`.
    static func parameterCount(_ header: QuantizedBlockHeader) -> Int

    /// Minimum and maximum of every group, in parameter order.
    static func ranges(_ source: UnsafePointer<Float>, header: QuantizedBlockHeader, rows: [Int]) -> (mins: [Float], maxs: [Float])

    /// Codes, one byte each, row `(h·n + r)` holding entry `rows[r]` of head `h`.
    static func codes(_ source: UnsafePointer<Float>, header: QuantizedBlockHeader, rows: [Int],
                      parameters: QuantParameters.Fitted, into codes: UnsafeMutablePointer<UInt8>)

    /// Dequantizes row `r` of head `h` (unpacked codes) into elements `index..<index+dim` of `output`.
    static func dequantizeRow<O: DequantizedOutput>(
        _ codes: UnsafePointer<UInt8>, header: QuantizedBlockHeader, head h: Int, row r: Int,
        scale: UnsafePointer<Float>, zero: UnsafePointer<Float>, output: UnsafeMutableRawPointer, at index: Int, as: O.Type)
}
