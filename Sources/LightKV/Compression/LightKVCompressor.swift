/// LightKV carried to KV space: prompt-guided, progressive, windowed merging of vision entries.
///
/// At each stage layer of the schedule, every image (and video frame) is cut into W×W spatial
/// windows; inside each, ToMe bipartite matching on keys (cosine over all kv heads) pairs
/// entries and the best `r = min(⌊P·n⌋, ⌊n/2⌋)` merge. A merged entry's key and value are the
/// means of its members' weighted by how much the prompt attends to each (`PromptAttention`),
/// its size is its member count and its position its representative's. Groups hold for every
/// deeper layer (`groups=reuse`, applied to that layer's own keys and values and weighted by
/// that layer's own prompt attention) or are formed afresh from each layer's keys
/// (`groups=rematch`). Text entries pass through bit for bit.
///
///     var c = LightKVCompressor(settings: LightKVSettings())
///     let out = c.compress(layer, context: ctx)   // layers 0, 1, 2, … in order
public struct LightKVCompressor: CacheCompressor {
    public let settings: LightKVSettings
    private let method: String
    private var layout: VisionLayout?
    private var schedule: MergeSchedule?
    /// `groups=reuse`: representative position of each original position (itself if unmerged).
    private var representative: [Int32] = []
    private var sources: Set<String> = []

    public init(settings: LightKVSettings) {
        self.settings = settings
        self.method = "lightkv"
    }

    /// The `tome` baseline: the same merging over whole frames, with size weights (no prompt).
    public init(tome: BaselineSettings) {
        var s = LightKVSettings()
        s.schedule = tome.schedule
        s.retention = tome.retention
        s.guidance = .none
        s.windowed = false
        s.keyRule = .mean
        s.renormalise = false
        s.groups = .reuse
        self.settings = s
        self.method = "tome"
    }

    /// Per layer, the prompt attention of its vision entries, for `budget=adaptive`.
    private var surveyed: [[Float]] = []
    /// Entries standing after each stage (by stage layer), for `budget=adaptive`.
    private var adaptiveTargets: [Int: Int] = [:]

    public var surveyPasses: Int { settings.budget == .adaptive && settings.stages == nil ? 1 : 0 }

    public mutating func survey(_ layer: KVLayer, context: LayerContext) {
        prepare(context)
        let layout = layout!
        let vision = (0..<layer.count).filter { layout.isVision(layer.positions[$0]) }
        surveyed.append(PromptAttention.guide(settings.guidance, layer: layer, promptQuery: context.promptQuery,
                                              promptRange: layout.promptRange, entries: vision).weights)
        if surveyed.count == context.layerCount, let schedule {
            let reference = schedule.stages.map { standingTarget($0, layout: layout) ?? layout.visionTokenCount }
            let counts = StageBudget.counts(stageLayers: schedule.stages.map(\.layer), referenceCounts: reference,
                                            layerCount: context.layerCount, importance: surveyed,
                                            floor: layout.frames.count, ceiling: layout.visionTokenCount)
            adaptiveTargets = Dictionary(uniqueKeysWithValues: zip(schedule.stages.map(\.layer), counts))
            surveyed = []
        }
    }

    private mutating func prepare(_ context: LayerContext) {
        guard layout == nil else { return }
        layout = VisionLayout(spans: context.spans, seqLen: context.seqLen)
        schedule = settings.mergeSchedule(layerCount: context.layerCount)
        representative = (0..<Int32(context.seqLen)).map { $0 }
    }

    public var record: [String: String] {
        var r = ["method": method,
                 "guidance": sources.isEmpty ? "unused" : sources.sorted().joined(separator: "; "),
                 "groups": settings.groups.rawValue,
                 "key": settings.keyRule.rawValue,
                 "renorm": settings.renormalise ? "on" : "off",
                 "windows": settings.windowed ? "per frame, shrunk to >= 8 entries per window" : "none (whole frame)",
                 "reference": settings.schedule.rawValue]
        if !adaptiveTargets.isEmpty {
            r["budget"] = "adaptive: " + adaptiveTargets.sorted { $0.key < $1.key }.map { "\($0.key)/\($0.value)" }.joined(separator: ",")
        }
        if let near = settings.near { r["near"] = String(near) }
        if let s = schedule {
            r["schedule"] = s.summary
            r["nominal_retention"] = String(format: "%.4f", s.nominalAverageRetention)
        }
        return r
    }

    public mutating func compress(_ layer: KVLayer, context: LayerContext) -> KVLayer {
        prepare(context)
        let layout = layout!
        let stagesNow = schedule!.stages(upTo: context.index)
        guard !stagesNow.isEmpty else { return layer }

        var vision: [Int] = [], text: [Int] = []
        for j in 0..<layer.count {
            if layout.isVision(layer.positions[j]) { vision.append(j) } else { text.append(j) }
        }
        guard !vision.isEmpty else { return layer }

        let guided = PromptAttention.guide(settings.guidance, layer: layer, promptQuery: context.promptQuery,
                                           promptRange: layout.promptRange, entries: vision)
        sources.insert(guided.source.rawValue)
        var weights = [Float](repeating: 0, count: layer.count)
        for (o, j) in vision.enumerated() { weights[j] = guided.weights[o] }

        var plan: MergePlan
        switch settings.groups {
        case .reuse:
            plan = groupsFromRepresentatives(vision, layer: layer)
            if let stage = stagesNow.last, stage.layer == context.index {
                plan = runStage(stage, plan: plan, layer: layer, weights: weights, layout: layout)
                for group in plan.groups {
                    for j in group.members { representative[Int(layer.positions[j])] = group.representative }
                }
            }
        case .rematch:
            plan = MergePlan.singletons(vision, layer: layer)
            for stage in stagesNow {
                plan = runStage(stage, plan: plan, layer: layer, weights: weights, layout: layout)
            }
        }
        return plan.apply(to: layer, text: text, weights: weights, keyRule: settings.keyRule,
                          renormalise: settings.renormalise)
    }

    /// The groups earlier stages formed, over this layer's entries.
    private func groupsFromRepresentatives(_ vision: [Int], layer: KVLayer) -> MergePlan {
        var index: [Int32: Int] = [:]
        var groups: [MergePlan.Group] = []
        for j in vision {
            let rep = representative[Int(layer.positions[j])]
            if let g = index[rep] {
                groups[g].members.append(j)
            } else {
                index[rep] = groups.count
                groups.append(MergePlan.Group(representative: rep, members: [j]))
            }
        }
        groups.sort { $0.representative < $1.representative }
        return MergePlan(groups: groups)
    }

    /// Vision entries a reference-schedule stage leaves standing: its nominal share of the
    /// original vision tokens, at least one per frame. Explicit stages (`lightkv@L/W/P`) have
    /// none: they merge `⌊P·n⌋` in each window, as written.
    private func standingTarget(_ stage: MergeSchedule.Stage, layout: VisionLayout) -> Int? {
        guard settings.stages == nil, let schedule else { return nil }
        if let adaptive = adaptiveTargets[stage.layer] { return adaptive }
        let f = schedule.nominalKeepFraction(layer: stage.layer)
        return max(layout.frames.count, Int((f * Double(layout.visionTokenCount)).rounded()))
    }

    /// One stage: windows per frame, bipartite matching inside each, merged plan; with a
    /// standing target, exactly that many groups stand afterwards.
    private func runStage(_ stage: MergeSchedule.Stage, plan: MergePlan, layer: KVLayer, weights: [Float],
                          layout: VisionLayout) -> MergePlan {
        let windows = settings.windowed ? stage.windowsPerSide : nil
        let near = settings.near.map { Float($0) } ?? -.infinity
        guard let target = standingTarget(stage, layout: layout) else {
            return plan.matchingRound(layer: layer, weights: weights, layout: layout, windowsPerSide: windows,
                                      keyRule: settings.keyRule, renormalise: settings.renormalise, minSimilarity: near) { sizes in
                sizes.map { BipartiteMatching.mergeCount($0, ratio: stage.ratio) }
            }
        }
        return plan.mergedDown(to: target, layer: layer, weights: weights, layout: layout, windowsPerSide: windows,
                               keyRule: settings.keyRule, renormalise: settings.renormalise, minSimilarity: near)
    }
}
