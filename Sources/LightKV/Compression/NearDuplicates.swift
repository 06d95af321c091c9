/// Vision entries whose keys have a near-duplicate beside them in their frame: where a
/// reduction costs little (`budget=redundancy`), and by their absence the text-dense spans a
/// reduction must leave alone (`DenseSpanGuard`).
enum NearDuplicates {
    /// How alike two entries' keys must be to count as near-duplicates unless a policy's `near`
    /// says otherwise (docs/design/aircache.md, "Reducing only near-duplicates").
    static let threshold: Float = 0.95

    /// One unit-normed row of every head's key per entry of `vision`: what matching compares.
    static func keyFeatures(_ vision: [Int], layer: KVLayer) -> [Float] {
        MergePlan.singletons(vision, layer: layer)
            .features(layer: layer, weights: [Float](repeating: 1, count: layer.count), keyRule: .mean, renormalise: false)
    }

    /// For each entry of `vision` (indices into `layer`): whether a spatial neighbour (the next
    /// or previous entry in its row or column of the frame, where it still stands) has keys,
    /// every head's as merging compares them, at least `threshold` alike.
    static func flags(_ layer: KVLayer, vision: [Int], layout: VisionLayout, threshold: Float) -> [Bool] {
        guard !vision.isEmpty else { return [] }
        let features = keyFeatures(vision, layer: layer), dim = layer.kvHeads * layer.headDim
        var row: [Int32: Int] = [:]
        for (o, j) in vision.enumerated() { row[layer.positions[j]] = o }
        var alike = [Bool](repeating: false, count: vision.count)
        features.withUnsafeBufferPointer { f in
            for (o, j) in vision.enumerated() {
                let p = layer.positions[j]
                let frame = layout.frames[Int(layout.frameOfPosition[Int(p)])]
                let (r, c) = layout.cell(p)
                for q in [c + 1 < frame.cols ? p + 1 : nil, r + 1 < frame.rows ? p + Int32(frame.cols) : nil] {
                    guard let q, let o2 = row[q] else { continue }
                    if VectorKernels.dot(f.baseAddress! + o * dim, f.baseAddress! + o2 * dim, dim) >= threshold {
                        alike[o] = true; alike[o2] = true
                    }
                }
            }
        }
        return alike
    }
}
