/// Builds a small kvsnap file in memory, for producers that hold their tensors as floats and
/// for tests. (Large files are streamed with `SafetensorsLayout` instead.)
///
///     var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "m", spans: spans))
///     b.add("layers.0.key", dtype: .f16, shape: [2, 26, 16], floats: keys)
///     let bytes = b.bytes()
public struct KVSnapBuilder {
    public var metadata: [String: String]
    private var tensors: [(entry: SafetensorsLayout.Entry, bytes: [UInt8])] = []

    public init(metadata: SnapshotMetadata) { self.metadata = metadata.raw }
    public init(rawMetadata: [String: String]) { self.metadata = rawMetadata }

    /// Adds a tensor from floats, converted to `dtype`.
    public mutating func add(_ name: String, dtype: DType, shape: [Int], floats: [Float]) {
        precondition(shape.reduce(1, *) == floats.count, "\(name): \(floats.count) values for shape \(shape)")
        tensors.append((.init(name, dtype, shape), Conversion.bytes(floats, dtype: dtype)))
    }

    /// Adds an I32 tensor.
    public mutating func add(_ name: String, shape: [Int], ints: [Int32]) {
        let bytes = ints.withUnsafeBytes { Array($0) }
        tensors.append((.init(name, .i32, shape), bytes))
    }

    /// Adds the `input_ids` tensor (I64, as Hugging Face processors give them).
    public mutating func addInputIDs(_ ids: [Int64]) {
        let bytes = ids.map(\.littleEndian).withUnsafeBytes { Array($0) }
        tensors.append((.init(Snapshot.inputIDsName, .i64, [ids.count]), bytes))
    }

    /// Adds a tensor from raw little-endian bytes, as given.
    public mutating func add(_ name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
        tensors.append((.init(name, dtype, shape), bytes))
    }

    /// The whole file.
    public func bytes() -> [UInt8] {
        let layout = SafetensorsLayout(entries: tensors.map(\.entry), metadata: metadata)
        var out = layout.header
        out.reserveCapacity(layout.fileSize)
        for t in tensors { out += t.bytes }
        return out
    }
}
