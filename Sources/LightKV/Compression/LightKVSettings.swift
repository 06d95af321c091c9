/// Every choice LightKV makes in KV space, as one value (docs/DESIGN.md ("LightKV in KV space") has the
/// measurements behind each default).
///
///     var s = LightKVSettings()          // the defaults: `lightkv`
///     s.groups = .rematch                 // `lightkv:groups=rematch`
public struct LightKVSettings: Sendable, Equatable {
    /// Where the prompt attention that weights merges comes from.
    public enum Guidance: String, Sendable, Equatable, CaseIterable {
        /// The snapshot's `prompt_query`; the prompt span's keys where it has none.
        case query
        /// Always the prompt span's keys, as queries (for comparison with `query`).
        case keys
        /// No prompt: every entry weighs its size (plain ToMe averaging).
        case none
    }

    /// What deeper layers do with the groups a stage formed.
    public enum Groups: String, Sendable, Equatable, CaseIterable {
        /// Apply the same membership to each deeper layer's own keys and values.
        case reuse
        /// Re-run every stage so far on each layer's own keys (same counts, own groups).
        case rematch
    }

    /// How a merged entry's key is formed (values are always the weighted mean).
    public enum KeyRule: String, Sendable, Equatable, CaseIterable {
        /// Prompt-weighted mean of the members' keys.
        case mean
        /// The representative's own key (the B token a group formed around).
        case rep
    }

    /// The reference schedule the stages come from.
    public var schedule: MergeSchedule.Reference = .auto
    /// Explicit stages (`lightkv@12/4/0.5,18/2/0.5`), used as given for any layer count
    /// instead of `schedule` and `retention`.
    public var stages: [MergeSchedule.Stage]?
    /// Average vision retention over layers to aim for (0…1); nil keeps the reference ratio 0.5.
    public var retention: Double?
    public var guidance: Guidance = .query
    public var groups: Groups = .reuse
    public var keyRule: KeyRule = .mean
    /// Rescale each merged key, per head, to the weighted mean of its members' key norms
    /// (averaging shrinks norms, which flattens the attention the entry receives).
    public var renormalise = false
    /// Merge only inside spatial windows; false merges over a whole frame (the `tome` baseline).
    public var windowed = true
    /// How many entries each stage leaves standing: the reference schedule's share
    /// (`schedule`), or the same total divided over stages by need (`adaptive`,
    /// `StageBudget`).
    public var budget: Budget = .schedule
    /// Merge only near-duplicates: pairs whose keys are at least this alike (cosine, every
    /// head's); a stage stops short of its count where no such pair is left, so retention becomes
    /// a ceiling (`AirCacheSettings.near`). nil: every stage merges its count (the reference).
    public var near: Double?
    /// Vision spans with fewer than this share of near-duplicate entries are text-dense and kept
    /// whole (`DenseSpanGuard`); 0 reduces every span (the method as published).
    public var dense = DenseSpanGuard.defaultShare

    public enum Budget: String, Sendable, Equatable, CaseIterable {
        case schedule
        case adaptive
    }

    public init() {}

    /// The concrete schedule for a model with `layerCount` layers.
    public func mergeSchedule(layerCount: Int) -> MergeSchedule {
        if let stages { return MergeSchedule(stages: stages.filter { $0.layer < layerCount }, layerCount: layerCount) }
        return MergeSchedule.reference(schedule, layerCount: layerCount, retention: retention)
    }
}
