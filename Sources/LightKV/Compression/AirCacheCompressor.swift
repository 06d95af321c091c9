/// AirCache in KV space (`aircache`), and merge-and-evict on the same footing (`airmerge`).
///
/// A survey pass scores every layer's vision entries by the elite observers' attention
/// (`ObservationWindow`) and divides the budget over layers (`LayerBudget`). Then each layer
/// keeps its budget: `aircache` keeps the most observed entries and drops the rest;
/// `airmerge` keeps the most observed share (`protect`) exact, drops what the observers ignore
/// (importance below `evict` × the layer's mean, never more than must go), and merges the rest — bipartite matching over whole frames,
/// weighted by observed importance — down to the budget. Text passes through bit for bit.
///
///     var c = AirCacheCompressor(settings: AirCacheSettings())
///     for i in layers { c.survey(layer(i), context: ctx(i)) }      // surveyPasses is 1
///     let out = c.compress(layer(0), context: ctx(0))     // then 1, 2, …
public struct AirCacheCompressor: CacheCompressor {
    public let settings: AirCacheSettings
    private let method: String
    private var layout: VisionLayout?
    /// Per surveyed layer: the vision entries' positions and importance, in layer order.
    private var importance: [[Float]] = []
    private var visionPositions: [[Int32]] = []
    private var observerCounts: [Int] = []
    /// Per surveyed layer, for `budget=redundancy`: vision entries with a near-duplicate neighbour.
    private var redundant: [Int] = []
    private var budgets: [Int]?
    /// Vision entries each compressed layer kept (`near` may keep more than the budget).
    private var kept: [Int] = []
    private var sources: Set<String> = []

    public init(settings: AirCacheSettings, method: String? = nil) {
        self.settings = settings
        self.method = method ?? (settings.merge ? "airmerge" : "aircache")
    }

    public var surveyPasses: Int { 1 }

    public var record: [String: String] {
        var r = ["method": method, "budget": settings.budget.rawValue,
                 "target_retention": String(format: "%.2f", settings.retention),
                 "observers": !settings.guided ? "none (guide=none)" : settings.allObservers ? "every instruction token with a query" : "elite window, agreement \(settings.agreement ? "on" : "off")",
                 "guidance": sources.isEmpty ? "unused" : sources.sorted().joined(separator: "; ")]
        if let b = budgets, let n = layout?.visionTokenCount, n > 0 {
            r["layer_budgets"] = b.map(String.init).joined(separator: ",")
            r["nominal_retention"] = String(format: "%.4f", Double(b.reduce(0, +)) / Double(b.count * n))
            r["layer_skewness"] = importance.map { String(format: "%.2f", Self.skewness($0)) }.joined(separator: ",")
        }
        if settings.merge {
            r["protect"] = !settings.guided ? "0 (guide=none)" : settings.distinct ? "\(settings.protect) (distinct)" : String(settings.protect)
            r["evict"] = String(settings.evict)
        }
        if let near = settings.near {
            r["near"] = String(near)
            if !kept.isEmpty, let n = layout?.visionTokenCount, n > 0 {
                // What near-duplicates allowed: above the budgets where entries were distinct.
                r["vision_retention"] = String(format: "%.4f", Double(kept.reduce(0, +)) / Double(kept.count * n))
            }
        }
        return r
    }

    public mutating func survey(_ layer: KVLayer, context: LayerContext) {
        if layout == nil { layout = VisionLayout(spans: context.spans, seqLen: context.seqLen) }
        precondition(context.index == importance.count, "layers must be surveyed in order")
        let layout = layout!
        let vision = layer.positions.indices.filter { layout.isVision(layer.positions[$0]) }
        importance.append(score(layer, context: context, entries: vision))
        visionPositions.append(vision.map { layer.positions[$0] })
        if settings.budget == .redundancy {
            let near = settings.near.map { Float($0) } ?? NearDuplicates.threshold
            redundant.append(NearDuplicates.flags(layer, vision: vision, layout: layout, threshold: near).filter { $0 }.count)
        }
    }

    /// Observed importance of `entries`, from the elite window of `prompt_query`, else from the
    /// prompt span's keys as queries (all of them observers), else from entry sizes.
    private mutating func score(_ layer: KVLayer, context: LayerContext, entries: [Int]) -> [Float] {
        guard settings.guided else {
            sources.insert("none (guide=none: entry sizes)")
            return entries.map { Float(layer.sizes[$0]) }
        }
        if let q = context.promptQuery, q.count > 0, let range = context.promptQueryPositions {
            let rows = range.map { p in layer.positions.firstIndex(of: Int32(p)) }
            if rows.allSatisfy({ $0 != nil }) {
                let k = settings.observerCount(instructionQueries: q.count)
                var own = [Float](repeating: 0, count: layer.kvHeads * q.count * layer.headDim)
                for h in 0..<layer.kvHeads {
                    for (t, j) in rows.enumerated() {
                        let from = (h * layer.count + j!) * layer.headDim, to = (h * q.count + t) * layer.headDim
                        own[to ..< to + layer.headDim] = layer.keys[from ..< from + layer.headDim]
                    }
                }
                let observers = ObservationWindow.observers(queries: q, ownKeys: own, kvHeads: layer.kvHeads, count: k)
                sources.insert("prompt_query (\(observers.count) of \(q.count) observers)")
                return weighted(q, observers: observers, layer: layer, entries: entries)
            }
        }
        if let q = context.promptQuery, q.count > 0 {
            sources.insert("prompt_query (positions unknown: all observers)")
            return weighted(q, observers: Array(0..<q.count), layer: layer, entries: entries)
        }
        if let q = PromptAttention.promptKeys(layer: layer, promptRange: layout?.promptRange) {
            sources.insert("prompt keys (no prompt_query)")
            return weighted(q, observers: Array(0..<q.count), layer: layer, entries: entries)
        }
        sources.insert("none (entry sizes)")
        return entries.map { Float(layer.sizes[$0]) }
    }

    private func weighted(_ q: QueryBlock, observers: [Int], layer: KVLayer, entries: [Int]) -> [Float] {
        ObservationWindow.importance(queries: q, observers: observers, layer: layer, entries: entries,
                                     agreement: settings.agreement)
    }

    /// Per-layer entry counts for the whole snapshot, once every layer is surveyed.
    private mutating func allocate() -> [Int] {
        let layout = layout!
        let n = layout.visionTokenCount, frames = layout.frames.count, layers = importance.count
        let total = settings.totalBudget(layerCount: layers, visionTokens: n, frames: frames)
        switch settings.budget {
        case .flat:
            return ProportionalShares.split(total, weights: [Double](repeating: 1, count: layers),
                                            caps: importance.map(\.count))
        case .redundancy where redundant.contains(where: { $0 > 0 }):
            let floor = settings.layerFloor(visionTokens: n, frames: frames)
            let cuts = ProportionalShares.split(importance.reduce(0) { $0 + $1.count } - total, weights: redundant.map(Double.init),
                                                caps: importance.map { max(0, $0.count - floor) })
            return importance.indices.map { importance[$0].count - cuts[$0] }
        case .adaptive, .mass, .redundancy:
            let floors = [Int](repeating: settings.layerFloor(visionTokens: n, frames: frames), count: layers)
            return settings.budget == .mass
                ? LayerBudget.allocate(importance: importance, total: total, floors: floors, ceilings: importance.map(\.count))
                : LayerBudget.equalCoverage(importance: importance, total: total, floors: floors, ceilings: importance.map(\.count))
        }
    }

    public mutating func compress(_ layer: KVLayer, context: LayerContext) -> KVLayer {
        precondition(importance.count == context.layerCount, "AirCache surveys every layer before compressing")
        if budgets == nil { budgets = allocate() }
        let layout = layout!
        var text: [Int] = [], vision: [Int] = []
        for j in 0..<layer.count {
            if layout.isVision(layer.positions[j]) { vision.append(j) } else { text.append(j) }
        }
        precondition(vision.map { layer.positions[$0] } == visionPositions[context.index], "layer \(context.index) differs from the one surveyed")
        let weights = importance[context.index]
        let budget = budgets![context.index]
        guard budget < vision.count else {
            kept.append(vision.count)
            return layer
        }
        let order = vision.indices.sorted { weights[$0] > weights[$1] || (weights[$0] == weights[$1] && $0 < $1) }
        guard settings.merge else {
            var keep = Array(order.prefix(budget))
            if let near = settings.near {
                keep += Self.distinct(order.dropFirst(budget), from: keep, vision: vision, layer: layer, near: Float(near))
            }
            kept.append(keep.count)
            return layer.selecting((text + keep.map { vision[$0] }).sorted())
        }
        // Protected: the most observed, exact. Evicted: the ignored, least observed first.
        // Unguided, no entry is more observed than another: none is protected.
        let protected = settings.guided ? min(budget, Int((settings.protect * Double(budget)).rounded())) : 0
        let mustGo = vision.count - budget
        let mean = weights.reduce(0, +) / Float(max(weights.count, 1))
        let ignored = weights.reduce(0) { $0 + ($1 < Float(settings.evict) * mean ? 1 : 0) }
        let evicted = min(mustGo, ignored, vision.count - protected)
        let candidates = order.prefix(order.count - evicted)
        let protectedSet = settings.distinct && protected > 0
            ? Self.distinctLeaders(candidates, count: protected, vision: vision, layer: layer,
                                   near: settings.near.map { Float($0) } ?? NearDuplicates.threshold)
            : Array(order.prefix(protected))
        let isProtected = Set(protectedSet)
        let merged = candidates.filter { !isProtected.contains($0) }.map { vision[$0] }.sorted()
        var full = [Float](repeating: 0, count: layer.count)
        for (o, j) in vision.enumerated() { full[j] = weights[o] }
        let plan = MergePlan.singletons(merged, layer: layer)
            .mergedDown(to: budget - protectedSet.count, layer: layer, weights: full, layout: layout, windowsPerSide: nil,
                        keyRule: .mean, renormalise: false, minSimilarity: settings.near.map { Float($0) } ?? -.infinity)
        kept.append(protectedSet.count + plan.groups.count)
        let exact = (text + protectedSet.map { vision[$0] }).sorted()
        return plan.apply(to: layer, text: exact, weights: full, keyRule: .mean, renormalise: false)
    }

    /// `count` of `candidates` (indices into `vision`, most observed first): first those no
    /// more observed one chosen is `near` alike to, then, if too few are, the most observed of
    /// the rest: what `distinct=on` protects. A video shows its most observed object in every
    /// frame; protecting each copy spends the exact budget on duplicates, where one copy kept
    /// exact and the others merged leaves room for more of what was looked at. Never fewer
    /// entries exact than without.
    static func distinctLeaders(_ candidates: ArraySlice<Int>, count: Int, vision: [Int], layer: KVLayer, near: Float) -> [Int] {
        let features = NearDuplicates.keyFeatures(vision, layer: layer), dim = layer.kvHeads * layer.headDim
        var leaders: [Int] = []
        features.withUnsafeBufferPointer { f in
            for c in candidates where leaders.count < count
                && !leaders.contains(where: { VectorKernels.dot(f.baseAddress! + c * dim, f.baseAddress! + $0 * dim, dim) >= near }) {
                leaders.append(c)
            }
        }
        let chosen = Set(leaders)
        return leaders + candidates.lazy.filter { !chosen.contains($0) }.prefix(count - leaders.count)
    }

    /// Of the `dropped` vision entries (indices into `vision`, most important first), those no
    /// entry left in the cache is `near` alike to (cosine over every head's key, as merging
    /// compares them): what eviction with `near` keeps beyond the budget. Each one kept stands
    /// for the later ones like it, so of a cluster of near-duplicates one stays.
    static func distinct(_ dropped: ArraySlice<Int>, from kept: [Int], vision: [Int], layer: KVLayer, near: Float) -> [Int] {
        let features = NearDuplicates.keyFeatures(vision, layer: layer), dim = layer.kvHeads * layer.headDim
        var standing = kept, restored: [Int] = []
        features.withUnsafeBufferPointer { f in
            for d in dropped where !standing.contains(where: { VectorKernels.dot(f.baseAddress! + d * dim, f.baseAddress! + $0 * dim, dim) >= near }) {
                standing.append(d)
                restored.append(d)
            }
        }
        return restored
    }

    /// Sample skewness of a layer's importance (for the record: how peaked its observers are).
    static func skewness(_ x: [Float]) -> Double {
        guard x.count > 2 else { return 0 }
        let n = Double(x.count)
        let mean = x.reduce(0.0) { $0 + Double($1) } / n
        var m2 = 0.0, m3 = 0.0
        for v in x { let d = Double(v) - mean; m2 += d * d; m3 += d * d * d }
        m2 /= n; m3 /= n
        return m2 > 0 ? m3 / (m2 * m2.squareRoot()) : 0
    }
}
