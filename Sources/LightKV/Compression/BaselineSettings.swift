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
        case schedule, flat
    }

    public var method: Method
    /// Average vision retention to aim for (0…1); nil: the reference schedule's own (≈55%).
    public var retention: Double?
    public var schedule: MergeSchedule.Reference = .auto
    public var profile: Profile = .schedule
    public var seed: UInt64 = 0

    public init(method: Method, retention: Double? = nil) {
        self.method = method; self.retention = retention
    }
}
