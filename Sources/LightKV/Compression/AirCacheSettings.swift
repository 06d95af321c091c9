/// Every choice of `aircache` (eviction by an elite observation window with adaptive
/// per-layer budgets) and of `airmerge` (the same observers and budgets, merging what they
/// do not protect), as one value. docs/DESIGN.md ("AirCache") has the measurements behind
/// each default.
///
///     var s = AirCacheSettings()     // `aircache`: 10% of the vision entries on average
///     s.merge = true                 // `airmerge10`
public struct AirCacheSettings: Sendable, Equatable {
    /// How the budget is spread over layers.
    public enum Budget: String, Sendable, Equatable, CaseIterable {
        /// `LayerBudget.equalCoverage`: every layer keeps the same share of its importance.
        case adaptive
        /// `LayerBudget.allocate`: the most observed attention mass over all layers.
        case mass
        /// The same count in every layer.
        case flat
        /// What must go is taken from each layer in proportion to its entries with a spatial
        /// neighbour whose keys are `near` (0.95 if unset) alike: reduce where the layer is
        /// redundant, keep the layers whose entries all differ (`redundancy`). A snapshot with
        /// no such entry in any layer is budgeted as `adaptive`.
        case redundancy
    }

    /// Average vision retention over layers (0…1).
    public var retention: Double = 0.10
    /// Merge instead of dropping what the observers do not protect (`airmerge`).
    public var merge = false
    /// Elite observers; nil: half the instruction tokens with query states, at least one.
    public var observers: Int?
    /// Use every instruction token with a query state as an observer, weighted alike (what
    /// `prompt-topk:profile=adaptive` scores with).
    public var allObservers = false
    /// Weight perspectives by their agreement with the consensus (off: plain mean).
    public var agreement = true
    public var budget: Budget = .adaptive
    /// Every layer keeps at least this share of the average retention.
    public var floor = 0.25
    /// `airmerge`: share of each layer's budget kept as the most observed entries, unmerged.
    public var protect = 0.1
    /// `airmerge`: protect only entries no more observed protected entry is a near-duplicate of
    /// (keys `near` alike, 0.95 if unset); their duplicates are merged instead (`distinct=on`).
    /// Off: the most observed share, duplicates or not (the method as published).
    public var distinct = false
    /// `airmerge`: entries observed less than this many times the layer's mean importance are
    /// dropped rather than merged (never more than must go).
    public var evict = 0.05
    /// Reduce only near-duplicates: `airmerge` merges only pairs whose keys (every head's, as
    /// matching compares them) have cosine similarity at least this, and `aircache` drops an
    /// entry only if a kept entry is that alike; the rest stays exact, so a layer of distinct
    /// entries (a text-dense span) keeps more than its budget. nil: the method as published.
    public var near: Double?
    /// Score entries by the prompt's observers (`guide=query`, the method as published); false
    /// (`guide=none`): every entry weighs its size, nothing is protected, and the reduction reads
    /// nothing after the shareable prefix, so the prefix can be stored once for every question
    /// (docs/design/segments.md). `aircache` needs `near` then: eviction without guidance would
    /// keep the first entries of each frame.
    public var guided = true
    /// Vision spans with fewer than this share of near-duplicate entries are text-dense and kept
    /// whole (`DenseSpanGuard`); 0 reduces every span (the method as published).
    public var dense = DenseSpanGuard.defaultShare

    public init() {}

    /// The elite window size for `m` instruction tokens with queries.
    public func observerCount(instructionQueries m: Int) -> Int {
        allObservers ? m : min(m, max(1, observers ?? (m + 1) / 2))
    }

    /// Entries kept over all layers of an input with `visionTokens` per layer in `frames`
    /// frames: the requested average, but at least one entry per frame in every layer.
    public func totalBudget(layerCount: Int, visionTokens n: Int, frames: Int) -> Int {
        max(Int((retention * Double(layerCount * n)).rounded()), layerCount * max(frames, 1))
    }

    /// Each layer's floor: its share of the average, at least one entry per frame.
    public func layerFloor(visionTokens n: Int, frames: Int) -> Int {
        min(n, max(frames, Int((floor * retention * Double(n)).rounded())))
    }
}
