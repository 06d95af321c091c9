/// Rounds of bipartite matching over a plan's groups, frame by frame: what LightKV's stages,
/// `tome` and `airmerge` all merge with.
extension MergePlan {
    /// One round: each frame's groups cut into `windowsPerSide²` spatial windows (nil: the
    /// whole frame is one window), `counts(window sizes)` merges in each window, each of a
    /// pair at least `minSimilarity` alike.
    func matchingRound(layer: KVLayer, weights: [Float], layout: VisionLayout, windowsPerSide: Int?,
                       keyRule: LightKVSettings.KeyRule, renormalise: Bool, minSimilarity: Float = -.infinity,
                       counts: ([Int]) -> [Int]) -> MergePlan {
        let features = self.features(layer: layer, weights: weights, keyRule: keyRule, renormalise: renormalise)
        let dim = layer.kvHeads * layer.headDim
        var byFrame: [Int: [Int]] = [:]
        for (g, group) in groups.enumerated() {
            byFrame[Int(layout.frameOfPosition[Int(group.representative)]), default: []].append(g)
        }
        var windows: [[Int]] = []
        for (f, groupIndices) in byFrame.sorted(by: { $0.key < $1.key }) {
            let frame = layout.frames[f]
            let w = windowsPerSide.map {
                VisionLayout.effectiveWindows(requested: $0, standing: groupIndices.count, rows: frame.rows, cols: frame.cols)
            } ?? 1
            var cut = [[Int]](repeating: [], count: w * w)
            for g in groupIndices {
                let (row, col) = layout.cell(groups[g].representative)
                cut[VisionLayout.band(row, length: frame.rows, parts: w) * w + VisionLayout.band(col, length: frame.cols, parts: w)].append(g)
            }
            windows += cut
        }
        let r = counts(windows.map(\.count))
        var absorbed: [Int: Int] = [:]
        features.withUnsafeBufferPointer { fb in
            for (items, count) in zip(windows, r) {
                for m in BipartiteMatching.merges(features: fb.baseAddress!, dim: dim, rows: items, count: count,
                                                         minSimilarity: minSimilarity) {
                    absorbed[items[m.from]] = items[m.into]
                }
            }
        }
        return merging(absorbed)
    }

    /// Rounds until exactly `target` groups stand (or every window is down to one group): each
    /// round spreads the merges still needed over windows in proportion to their size
    /// (largest remainders first, at most half a window). With `minSimilarity`, rounds stop
    /// once no pair that alike is left: more than `target` groups may stand.
    func mergedDown(to target: Int, layer: KVLayer, weights: [Float], layout: VisionLayout, windowsPerSide: Int?,
                    keyRule: LightKVSettings.KeyRule, renormalise: Bool, minSimilarity: Float = -.infinity) -> MergePlan {
        var plan = self
        while plan.groups.count > target {
            let before = plan.groups.count
            plan = plan.matchingRound(layer: layer, weights: weights, layout: layout, windowsPerSide: windowsPerSide,
                                      keyRule: keyRule, renormalise: renormalise, minSimilarity: minSimilarity) { sizes in
                ProportionalShares.split(before - target, weights: sizes.map(Double.init), caps: sizes.map { $0 / 2 })
            }
            if plan.groups.count == before { break }
        }
        return plan
    }
}
