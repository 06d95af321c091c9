/// When LightKV merges: a list of stages, each at a layer, with a window grid and a ratio.
///
/// A stage `(layer Λ, windows per side W, ratio P)` merges, at layer Λ, a fraction P of the
/// vision entries still standing (`r = min(⌊P·n⌋, ⌊n/2⌋)` per window); the groups then hold for
/// every deeper layer. Layers before the first stage keep every vision token. Reference
/// schedules are given by fraction of depth, so they apply to any layer count and reproduce the
/// paper's layers exactly at 32 (LLaVA-1.5) and 28 (Qwen2.5-VL) layers.
public struct MergeSchedule: Sendable, Equatable {
    public struct Stage: Sendable, Equatable {
        public var layer: Int
        public var windowsPerSide: Int
        public var ratio: Double
        public init(layer: Int, windowsPerSide: Int, ratio: Double) {
            self.layer = layer; self.windowsPerSide = windowsPerSide; self.ratio = ratio
        }
    }

    /// Stages in increasing layer order.
    public var stages: [Stage]
    public var layerCount: Int

    public init(stages: [Stage], layerCount: Int) {
        self.stages = stages; self.layerCount = layerCount
    }

    /// A reference schedule by name, as fractions of depth.
    public enum Reference: String, Sendable, Equatable, CaseIterable {
        /// LLaVA-1.5 (32 layers): Λ = 12, 18, 24; W = 4, 2, 1; P = 0.5.
        case llava
        /// Qwen2.5-VL (28 layers): Λ = 12, 17, 22; W = 6, 4, 2; P = 0.5.
        case qwen
        /// `qwen` for 28-layer models, `llava` otherwise.
        case auto

        func resolved(layerCount: Int) -> Reference {
            self == .auto ? (layerCount == 28 ? .qwen : .llava) : self
        }

        /// (fraction of depth, windows per side) of each stage.
        var fractions: [(Double, Int)] {
            switch self {
            case .llava, .auto: [(12.0 / 32, 4), (18.0 / 32, 2), (24.0 / 32, 1)]
            case .qwen: [(12.0 / 28, 6), (17.0 / 28, 4), (22.0 / 28, 2)]
            }
        }
    }

    /// The largest fraction one stage may remove (in several rounds of at most halving); a
    /// stage keeps at least 5% of what stands before it.
    public static let maxStageRatio = 0.95

    /// The reference schedule for `layerCount` layers, at ratio 0.5 per stage or scaled to keep
    /// `retention` (0…1) of the vision entries on average over layers.
    ///
    /// Above the reference's own average (≈55%) the stages stay where they are and the ratio
    /// shrinks. Below it the stages move toward the input by a common factor of depth (which
    /// keeps their spacing) and the common ratio is solved for so the nominal average equals the
    /// target; of all placements, the one whose ratio is closest to the reference's 0.5 wins.
    /// Where integer layers leave no placement that reaches the target with ratios up to 0.5
    /// (few layers, low targets), the ratio goes above 0.5, up to `maxStageRatio`: a stage then
    /// merges in several rounds. `nominalAverageRetention` says what the result keeps;
    /// `RetentionCheck` refuses targets it cannot reach.
    public static func reference(_ ref: Reference, layerCount: Int, retention: Double? = nil) -> MergeSchedule {
        let fr = ref.resolved(layerCount: layerCount).fractions
        func make(scale: Double, ratio: Double) -> MergeSchedule {
            var stages: [Stage] = []
            var previous = -1
            for (f, w) in fr {
                var layer = Int((f * scale * Double(layerCount)).rounded())
                layer = max(layer, previous + 1)
                guard layer < layerCount else { break }
                stages.append(Stage(layer: layer, windowsPerSide: w, ratio: ratio))
                previous = layer
            }
            return MergeSchedule(stages: stages, layerCount: layerCount)
        }
        let base = make(scale: 1, ratio: 0.5)
        guard let target = retention else { return base }
        if target >= 1 { return MergeSchedule(stages: [], layerCount: layerCount) }
        /// The common ratio that makes `placement` keep `target` on average (capped).
        func solved(_ placement: MergeSchedule) -> MergeSchedule {
            var lo = 0.0, hi = maxStageRatio
            func at(_ r: Double) -> MergeSchedule {
                MergeSchedule(stages: placement.stages.map { Stage(layer: $0.layer, windowsPerSide: $0.windowsPerSide, ratio: r) },
                              layerCount: layerCount)
            }
            for _ in 0..<60 {
                let mid = (lo + hi) / 2
                if at(mid).nominalAverageRetention > target { lo = mid } else { hi = mid }
            }
            return at(hi)
        }
        var best = solved(base)
        var seen: Set<[Int]> = [base.stages.map(\.layer)]
        for step in 0...1000 {
            let placement = make(scale: Double(step) / 1000, ratio: 0.5)
            guard seen.insert(placement.stages.map(\.layer)).inserted, !placement.stages.isEmpty else { continue }
            let candidate = solved(placement)
            let gap = { (s: MergeSchedule) in abs(s.nominalAverageRetention - target) }
            let distance = { (s: MergeSchedule) in abs((s.stages.first?.ratio ?? 0) - 0.5) }
            // Reaching the target first, then the ratio nearest the reference's.
            if gap(candidate) < gap(best) - 1e-9 || (abs(gap(candidate) - gap(best)) <= 1e-9 && distance(candidate) < distance(best)) {
                best = candidate
            }
        }
        return best
    }

    /// Fraction of vision entries standing at `layer` if every stage removed exactly its ratio.
    public func nominalKeepFraction(layer: Int) -> Double {
        stages.reduce(1.0) { $1.layer <= layer ? $0 * (1 - $1.ratio) : $0 }
    }

    /// `nominalKeepFraction` averaged over all layers.
    public var nominalAverageRetention: Double {
        guard layerCount > 0 else { return 1 }
        return (0..<layerCount).reduce(0.0) { $0 + nominalKeepFraction(layer: $1) } / Double(layerCount)
    }

    /// The stages that act at or before `layer`.
    public func stages(upTo layer: Int) -> [Stage] { stages.filter { $0.layer <= layer } }

    /// `12/4/0.5,18/2/0.5,24/1/0.5`: for the compression record.
    public var summary: String {
        stages.map { "\($0.layer)/\($0.windowsPerSide)/\(String(format: "%.3f", $0.ratio))" }.joined(separator: ",")
    }
}

import Foundation
