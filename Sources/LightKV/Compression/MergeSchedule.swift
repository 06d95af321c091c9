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

    /// The reference schedule for `layerCount` layers, at ratio 0.5 per stage or scaled to keep
    /// `retention` (0…1) of the vision entries on average over layers.
    ///
    /// Above the reference's own average (≈55%) the stages stay where they are and the ratio
    /// shrinks; below it the ratio stays 0.5 (a stage can at most halve) and the stages move
    /// toward the input by a common factor of depth, which keeps their spacing. The nominal
    /// average is met as closely as integer layers allow; `nominalAverageRetention` says what it is.
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
        if target >= base.nominalAverageRetention {
            var lo = 0.0, hi = 0.5
            for _ in 0..<50 {
                let mid = (lo + hi) / 2
                if make(scale: 1, ratio: mid).nominalAverageRetention > target { lo = mid } else { hi = mid }
            }
            return make(scale: 1, ratio: (lo + hi) / 2)
        }
        var best = base, bestError = Double.infinity
        for step in 0...1000 {
            let candidate = make(scale: Double(step) / 1000, ratio: 0.5)
            let error = abs(candidate.nominalAverageRetention - target)
            if error < bestError { best = candidate; bestError = error }
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
