/// How many vision entries each LightKV stage leaves standing when the schedule's total is
/// divided by need (`lightkv:budget=adaptive`) instead of by the fixed ratio P per stage.
///
/// Merged groups carry to deeper layers, so a stage's count holds from its layer to the next
/// stage's and counts can only fall with depth. The total the reference schedule keeps over
/// those layers is divided per layer by `LayerBudget.equalCoverage` (a layer whose prompt
/// attention is skewed needs few entries to keep its share of it, a flat one many), each stage
/// takes the mean of its layers' budgets, and the stages are made non-increasing by pooling
/// adjacent violators, weighted by their spans, which keeps the total and so the retention.
///
///     StageBudget.counts(stageLayers: [2, 4], referenceCounts: [8, 4], layerCount: 6,
///                        importance: importance, floor: 1, ceiling: 16)
public enum StageBudget {
    /// Entries standing after each stage. `importance[l]` are layer `l`'s vision entries'
    /// importance (only layers from the first stage on are read); counts stay in
    /// `floor...ceiling` and sum, weighted by span, to about the reference total.
    public static func counts(stageLayers: [Int], referenceCounts: [Int], layerCount: Int,
                              importance: [[Float]], floor: Int, ceiling: Int) -> [Int] {
        precondition(stageLayers.count == referenceCounts.count && importance.count == layerCount,
                     "one reference count per stage and importance for every layer")
        guard let first = stageLayers.first else { return [] }
        let spans = stageLayers.indices.map { s in (s + 1 < stageLayers.count ? stageLayers[s + 1] : layerCount) - stageLayers[s] }
        let total = zip(referenceCounts, spans).reduce(0) { $0 + $1.0 * $1.1 }
        let layers = Array(first..<layerCount)
        let perLayer = LayerBudget.equalCoverage(importance: layers.map { importance[$0] }, total: total,
                                                 floors: layers.map { _ in floor }, ceilings: layers.map { _ in ceiling })
        var means = stageLayers.indices.map { s -> Double in
            let from = stageLayers[s] - first
            return Double(perLayer[from..<(from + spans[s])].reduce(0, +)) / Double(spans[s])
        }
        means = nonIncreasing(means, weights: spans.map(Double.init))
        return means.map { min(ceiling, max(floor, Int($0.rounded()))) }
    }

    /// The closest non-increasing sequence in weighted least squares (pool adjacent
    /// violators); the weighted sum is unchanged.
    static func nonIncreasing(_ values: [Double], weights: [Double]) -> [Double] {
        var blocks: [(value: Double, weight: Double, count: Int)] = []
        for (v, w) in zip(values, weights) {
            blocks.append((v, w, 1))
            while blocks.count > 1, blocks[blocks.count - 2].value < blocks[blocks.count - 1].value {
                let b = blocks.removeLast(), a = blocks.removeLast()
                let weight = a.weight + b.weight
                blocks.append(((a.value * a.weight + b.value * b.weight) / weight, weight, a.count + b.count))
            }
        }
        return blocks.flatMap { Array(repeating: $0.value, count: $0.count) }
    }
}
