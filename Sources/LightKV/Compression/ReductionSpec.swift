/// Which vision-token reduction a policy applies, with its settings.
///
/// Spelled as one `+`-part of a policy (grammar in docs/DESIGN.md ("LightKV in KV space")):
///
///     reduction := method [percent] ["@" schedule] { ":" key "=" value }
///     method    := "none" | "lightkv" | "uniform" | "random" | "prompt-topk" | "tome" | "aircache" | "airmerge"
///     percent   := 1…100, average vision retention over layers to aim for
///     schedule  := "auto" | "llava" | "qwen" | stage { "," stage }   (stages: lightkv only)
///     stage     := layer "/" windowsPerSide "/" ratio                  e.g. 12/4/0.5
///
/// `lightkv` options: `groups=reuse|rematch`, `key=mean|rep`, `renorm=on|off`,
/// `guide=query|keys|none`, `windows=on|off` (off: match over whole frames), `budget=schedule|adaptive`. `aircache`/`airmerge` options:
/// `observers=K`, `agreement=on|off`, `budget=adaptive|mass|flat|redundancy`, `floor=F`; `airmerge` also `protect=F`,
/// `evict=F`; both `near=S` and `guide=query|none`. Every method: `dense=F` (`DenseSpanGuard`). Baseline options: `profile=schedule|flat|adaptive` (not `tome`; adaptive: `prompt-topk`),
/// `seed=N` (`random` only). Examples: `lightkv`, `lightkv@qwen`, `lightkv35:key=rep`,
/// `uniform55`, `random35:seed=7`, `prompt-topk20:profile=flat`, `tome55`.
public enum ReductionSpec: Sendable, Equatable {
    /// Bumped whenever a reduction's output changes under the same name (a default moved, a
    /// guard added). A guided segment is found by policy name (`PrefixSource` hashes this
    /// too), so a binary that reduces differently never names a segment an older one reduced.
    /// 2: the dense-span guard (docs/design/dense.md).
    public static let revision = 2

    /// Every entry kept as it is.
    case none
    /// Prompt-guided progressive windowed merging.
    case lightkv(LightKVSettings)
    /// A comparison method.
    case baseline(BaselineSettings)
    /// Eviction by an elite observation window with adaptive per-layer budgets (`aircache`),
    /// or merge-and-evict on the same observers and budgets (`airmerge`).
    case aircache(AirCacheSettings)

    /// The canonical spelling of this part; parsing it gives this value back.
    public var name: String {
        switch self {
        case .none: return "none"
        case .lightkv(let s):
            let d = LightKVSettings()
            var options: [String] = []
            if s.groups != d.groups { options.append("groups=\(s.groups.rawValue)") }
            if s.keyRule != d.keyRule { options.append("key=\(s.keyRule.rawValue)") }
            if s.renormalise != d.renormalise { options.append("renorm=\(s.renormalise ? "on" : "off")") }
            if s.guidance != d.guidance { options.append("guide=\(s.guidance.rawValue)") }
            if s.windowed != d.windowed { options.append("windows=\(s.windowed ? "on" : "off")") }
            if s.budget != d.budget { options.append("budget=\(s.budget.rawValue)") }
            if let n = s.near { options.append("near=\(Self.decimal(n))") }
            if s.dense != d.dense { options.append("dense=\(Self.decimal(s.dense))") }
            if let stages = s.stages {
                let st = stages.map { "\($0.layer)/\($0.windowsPerSide)/\($0.ratio)" }.joined(separator: ",")
                return (["lightkv@" + st] + options).joined(separator: ":")
            }
            return Self.spell("lightkv", s.retention, s.schedule, options)
        case .baseline(let b):
            var options: [String] = []
            if b.profile != .schedule { options.append("profile=\(b.profile.rawValue)") }
            if b.seed != 0 { options.append("seed=\(b.seed)") }
            if b.dense != DenseSpanGuard.defaultShare { options.append("dense=\(Self.decimal(b.dense))") }
            return Self.spell(b.method.rawValue, b.retention, b.schedule, options)
        case .aircache(let a):
            let d = AirCacheSettings()
            var options: [String] = []
            if let k = a.observers { options.append("observers=\(k)") }
            if a.agreement != d.agreement { options.append("agreement=\(a.agreement ? "on" : "off")") }
            if a.budget != d.budget { options.append("budget=\(a.budget.rawValue)") }
            if a.floor != d.floor { options.append("floor=\(Self.decimal(a.floor))") }
            if a.merge && a.protect != d.protect { options.append("protect=\(Self.decimal(a.protect))") }
            if a.merge && a.evict != d.evict { options.append("evict=\(Self.decimal(a.evict))") }
            if a.merge && a.distinct != d.distinct { options.append("distinct=\(a.distinct ? "on" : "off")") }
            if let s = a.near { options.append("near=\(Self.decimal(s))") }
            if !a.guided { options.append("guide=none") }
            if a.dense != d.dense { options.append("dense=\(Self.decimal(a.dense))") }
            return Self.spell(a.merge ? "airmerge" : "aircache", a.retention, .auto, options)
        }
    }

    /// A setting spelled exactly (the shortest decimal that reads back as `x`): a policy's
    /// name says what ran, and two settings that differ must not share a name (a later
    /// question finds a guided segment by it; docs/design/segments.md).
    private static func decimal(_ x: Double) -> String {
        var s = "\(x)"
        if s.hasSuffix(".0") { s.removeLast(2) }
        return s
    }

    private static func spell(_ method: String, _ retention: Double?, _ schedule: MergeSchedule.Reference,
                              _ options: [String]) -> String {
        var s = method
        if let r = retention { s += "\(Int((r * 100).rounded()))" }
        if schedule != .auto { s += "@\(schedule.rawValue)" }
        return ([s] + options).joined(separator: ":")
    }

    /// True when what the reduction keeps of the vision entries depends on the prompt (its
    /// queries or keys): such a reduction cannot store a prefix shared by other questions
    /// (docs/design/segments.md, "When an entry is segmented").
    public var readsPrompt: Bool {
        switch self {
        case .none: return false
        case .lightkv(let s): return s.guidance != .none
        case .baseline(let b): return b.method == .promptTopK
        case .aircache(let a): return a.guided
        }
    }

    /// The share of near-duplicate entries below which a vision span is kept whole
    /// (`DenseSpanGuard`); nil or 0: every span is reduced.
    public var denseShare: Double? {
        switch self {
        case .none: nil
        case .lightkv(let s): s.dense
        case .baseline(let b): b.dense
        case .aircache(let a): a.dense
        }
    }

    /// A fresh compressor for one snapshot: the method, inside the dense-span guard unless
    /// `dense=0`.
    public func makeCompressor() -> any CacheCompressor {
        let method = methodCompressor()
        guard let share = denseShare, share > 0 else { return method }
        return DenseSpanGuard(share: share, wrapping: method)
    }

    private func methodCompressor() -> any CacheCompressor {
        switch self {
        case .none: IdentityCompressor()
        case .lightkv(let s): LightKVCompressor(settings: s)
        case .baseline(let b):
            switch b.method {
            case .tome: LightKVCompressor(tome: b)
            case .promptTopK where b.profile == .adaptive:
                AirCacheCompressor(settings: b.adaptiveSelection, method: b.method.rawValue)
            case .uniform, .random, .promptTopK: SelectionCompressor(settings: b)
            }
        case .aircache(let a): AirCacheCompressor(settings: a)
        }
    }
}

extension ReductionSpec {
    /// Parses one `+`-separated part of a policy name; nil when the part names no reduction
    /// method, a `PolicyError` naming the part when it does but the rest is malformed.
    public init?(token: String) throws(PolicyError) {
        func bad(_ why: String) -> PolicyError { .badPart(part: token, in: token, why: why) }
        let pieces = token.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let head = pieces[0].split(separator: "@", omittingEmptySubsequences: false).map(String.init)
        let stem = head[0]
        let digits = stem.reversed().prefix { $0.isASCII && $0.isNumber }
        let method = String(stem.dropLast(digits.count))
        let known = ["none", "lightkv", "aircache", "airmerge"] + BaselineSettings.Method.allCases.map(\.rawValue)
        guard known.contains(method) else { return nil }

        var retention: Double?
        if !digits.isEmpty {
            guard method != "none" else { throw bad("`none` takes no retention") }
            guard let p = Int(String(digits.reversed())), (1...100).contains(p) else {
                throw bad("retention \"\(String(digits.reversed()))\" must be a percentage 1 to 100")
            }
            retention = Double(p) / 100
        }
        var schedule = MergeSchedule.Reference.auto
        var stages: [MergeSchedule.Stage]?
        if head.count > 2 { throw bad("more than one \"@\"") }
        if head.count == 2 && head[1].contains("/") {
            guard method == "lightkv" else { throw bad("explicit stages are a lightkv setting; baselines take llava, qwen or auto") }
            guard retention == nil else { throw bad("give either a retention or explicit stages, not both") }
            var parsed: [MergeSchedule.Stage] = []
            for text in head[1].split(separator: ",", omittingEmptySubsequences: false) {
                let f = text.split(separator: "/", omittingEmptySubsequences: false)
                guard f.count == 3, let layer = Int(f[0]), let w = Int(f[1]), let p = Double(f[2]),
                      layer >= 0, w >= 1, p > 0, p <= 0.5 else {
                    throw bad("stage \"\(text)\" is not layer/windowsPerSide/ratio with layer >= 0, windows >= 1, 0 < ratio <= 0.5")
                }
                guard layer > (parsed.last?.layer ?? -1) else { throw bad("stage \"\(text)\": stage layers must increase") }
                parsed.append(MergeSchedule.Stage(layer: layer, windowsPerSide: w, ratio: p))
            }
            stages = parsed
        } else if head.count == 2 {
            guard method != "none" else { throw bad("`none` takes no schedule") }
            guard let s = MergeSchedule.Reference(rawValue: head[1]) else {
                throw bad("schedule \"\(head[1])\" is not one of \(MergeSchedule.Reference.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            schedule = s
        }
        var options: [(String, String)] = []
        for option in pieces.dropFirst() {
            let kv = option.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard kv.count == 2, !kv[0].isEmpty, !kv[1].isEmpty else { throw bad("option \"\(option)\" is not key=value") }
            options.append((kv[0], kv[1]))
        }

        if method == "none" {
            guard options.isEmpty else { throw bad("`none` takes no options") }
            self = .none
            return
        }
        func choice<T: RawRepresentable & CaseIterable>(_ key: String, _ value: String, _: T.Type) throws(PolicyError) -> T where T.RawValue == String {
            guard let v = T(rawValue: value) else {
                throw bad("\(key)=\(value): expected one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return v
        }
        func share(_ key: String, _ value: String, _ range: ClosedRange<Double>) throws(PolicyError) -> Double {
            guard let x = Double(value), range.contains(x) else {
                throw bad("\(key)=\(value): expected a number from \(range.lowerBound) to \(range.upperBound)")
            }
            return x
        }
        if method == "lightkv" {
            var s = LightKVSettings()
            s.retention = retention
            s.schedule = schedule
            s.stages = stages
            for (key, value) in options {
                switch key {
                case "groups": s.groups = try choice(key, value, LightKVSettings.Groups.self)
                case "key": s.keyRule = try choice(key, value, LightKVSettings.KeyRule.self)
                case "guide": s.guidance = try choice(key, value, LightKVSettings.Guidance.self)
                case "budget":
                    s.budget = try choice(key, value, LightKVSettings.Budget.self)
                    if s.budget == .adaptive && s.stages != nil { throw bad("budget=adaptive divides a reference schedule's total; explicit stages are used as written") }
                case "renorm", "windows":
                    guard value == "on" || value == "off" else { throw bad("\(key)=\(value): expected on or off") }
                    if key == "renorm" { s.renormalise = value == "on" } else { s.windowed = value == "on" }
                case "near": s.near = try share(key, value, -1...1)
                case "dense": s.dense = try share(key, value, 0...1)
                default: throw bad("unknown lightkv option \"\(key)\" (groups, key, renorm, guide, windows, budget, near, dense)")
                }
            }
            self = .lightkv(s)
            return
        }
        if method == "aircache" || method == "airmerge" {
            guard head.count == 1 else { throw bad("\(method) takes no schedule: its budget per layer is adaptive") }
            var a = AirCacheSettings()
            a.merge = method == "airmerge"
            if let retention { a.retention = retention }
            for (key, value) in options {
                switch key {
                case "observers":
                    guard let k = Int(value), k >= 1 else { throw bad("observers=\(value): expected a count of at least 1") }
                    a.observers = k
                case "agreement":
                    guard value == "on" || value == "off" else { throw bad("agreement=\(value): expected on or off") }
                    a.agreement = value == "on"
                case "budget": a.budget = try choice(key, value, AirCacheSettings.Budget.self)
                case "floor": a.floor = try share(key, value, 0...1)
                case "protect" where a.merge: a.protect = try share(key, value, 0...1)
                case "evict" where a.merge: a.evict = try share(key, value, 0...100)
                case "distinct" where a.merge:
                    guard value == "on" || value == "off" else { throw bad("distinct=\(value): expected on or off") }
                    a.distinct = value == "on"
                case "near": a.near = try share(key, value, -1...1)
                case "dense": a.dense = try share(key, value, 0...1)
                case "guide":
                    guard value == "query" || value == "none" else { throw bad("guide=\(value): expected query or none") }
                    a.guided = value == "query"
                default:
                    throw bad("unknown \(method) option \"\(key)\" (observers, agreement, budget, floor, near, guide, dense\(a.merge ? ", protect, evict, distinct" : ""))")
                }
            }
            if !a.guided && !a.merge && a.near == nil {
                throw bad("aircache with guide=none needs near=S: eviction without guidance would keep the first entries of each frame (or use airmerge)")
            }
            self = .aircache(a)
            return
        }
        var b = BaselineSettings(method: BaselineSettings.Method(rawValue: method)!, retention: retention)
        b.schedule = schedule
        for (key, value) in options {
            switch key {
            case "profile":
                b.profile = try choice(key, value, BaselineSettings.Profile.self)
                if b.profile == .flat && b.method == .tome { throw bad("tome merges by schedule stages; profile=flat is for drop methods") }
                if b.profile == .adaptive && b.method != .promptTopK { throw bad("profile=adaptive divides prompt attention over layers: a prompt-topk option") }
            case "seed":
                guard b.method == .random else { throw bad("seed is a `random` option") }
                guard let n = UInt64(value) else { throw bad("seed=\(value): expected a non-negative integer") }
                b.seed = n
            case "dense": b.dense = try share(key, value, 0...1)
            default: throw bad("unknown \(method) option \"\(key)\" (profile, dense\(b.method == .random ? ", seed" : ""))")
            }
        }
        self = .baseline(b)
    }
}
