/// A comparison method and the retention it aims for.
///
/// Baselines follow the same per-layer retention profile as LightKV at the same target
/// (`profile=schedule`, the default): every layer keeps the fraction the matching LightKV
/// schedule would nominally keep, so a comparison isolates *which* entries each method keeps
/// or merges, not *where* in depth it compresses. `profile=flat` instead keeps the target
/// fraction in every layer (the usual FastV/SnapKV setting; drop methods only).
public struct BaselineSettings: Sendable, Equatable {
    public enum Method: String, Sendable, Equatable, CaseIterable {
        /// Every k-th vision token of each span (evenly spread indices).
        case uniform
        /// A seeded random subset of each span, the same for every layer.
        case random
        /// Per layer, the vision tokens the prompt attends most (FastV/SnapKV style).
        case promptTopK = "prompt-topk"
        /// ToMe bipartite merging over whole frames: no windows, no prompt weights.
        case tome
    }

    public enum Profile: String, Sendable, Equatable, CaseIterable {
        /// LightKV's per-layer profile at the same target.
        case schedule
        /// The target in every layer.
        case flat
        /// `LayerBudget` over the prompt's attention (`prompt-topk` only).
        case adaptive
    }

    public var method: Method
    /// Average vision retention to aim for (0…1); nil: the reference schedule's own (≈55%).
    public var retention: Double?
    public var schedule: MergeSchedule.Reference = .auto
    public var profile: Profile = .schedule
    public var seed: UInt64 = 0
    /// Vision spans with fewer than this share of near-duplicate entries are text-dense and kept
    /// whole (`DenseSpanGuard`); 0 reduces every span (the method as published).
    public var dense = DenseSpanGuard.defaultShare

    public init(method: Method, retention: Double? = nil) {
        self.method = method; self.retention = retention
    }
}

extension BaselineSettings {
    /// Share of the vision tokens each layer keeps under the profile (`adaptive` has no fixed
    /// share: the flat target stands for it).
    public func layerFractions(layerCount: Int) -> [Double] {
        let schedule = MergeSchedule.reference(self.schedule, layerCount: layerCount, retention: retention)
        let flat = retention ?? schedule.nominalAverageRetention
        return (0..<layerCount).map { profile == .schedule ? schedule.nominalKeepFraction(layer: $0) : flat }
    }
}

extension BaselineSettings {
    /// `prompt-topk:profile=adaptive` as AirCache settings: every prompt query an observer,
    /// weighted alike, the budget divided by `LayerBudget`.
    var adaptiveSelection: AirCacheSettings {
        var a = AirCacheSettings()
        a.retention = retention ?? MergeSchedule.reference(schedule, layerCount: 32).nominalAverageRetention
        a.allObservers = true
        a.agreement = false
        return a
    }
}
