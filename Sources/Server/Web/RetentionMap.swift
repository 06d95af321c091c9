import LightKV
import Store

/// What became of every original token in each layer of a stored entry: which kept entry
/// (merged group) it went into, or that it was dropped. Consecutive layers that kept the
/// same groups form one stage (LightKV merges at a few stage layers and carries the groups
/// on), so a map is drawn per stage, not per layer.
struct RetentionMap {
    /// What a token became in a layer.
    enum Fate: Equatable {
        /// Part of kept entry `group`, which stands for `size` tokens.
        case kept(group: Int, size: Int)
        /// Folded into a merged entry whose members the pack does not record.
        case mergedUnknown
        /// Dropped (a selection policy), or not present.
        case dropped
    }

    struct Stage {
        /// Layers sharing this grouping.
        var layers: ClosedRange<Int>
        /// The fate of each original position, `0..<seqLen`.
        var fates: [Fate]
    }

    let stages: [Stage]

    /// Reads every layer's positions, sizes and member positions from the pack.
    init(pack: PackReader) throws {
        let seqLen = pack.header.seqLen
        var stages: [Stage] = []
        var previous: (positions: [Int32], sizes: [Int32], members: [Int32]?)?
        for i in 0..<pack.header.layers.count {
            let section = try pack.section(i)
            let current = (positions: section.positions, sizes: section.sizes, members: section.memberPositions)
            if let p = previous, p.positions == current.positions, p.sizes == current.sizes, p.members == current.members {
                stages[stages.count - 1].layers = stages[stages.count - 1].layers.lowerBound...i
                continue
            }
            previous = current
            stages.append(Stage(layers: i...i, fates: Self.fates(seqLen: seqLen, positions: current.positions,
                                                                 sizes: current.sizes, members: current.members)))
        }
        self.stages = stages
    }

    static func fates(seqLen: Int, positions: [Int32], sizes: [Int32], members: [Int32]?) -> [Fate] {
        var fates = [Fate](repeating: .dropped, count: seqLen)
        if let members {
            var o = 0
            for (j, s) in sizes.enumerated() {
                for m in members[o..<(o + Int(s))] where Int(m) < seqLen { fates[Int(m)] = .kept(group: j, size: Int(s)) }
                o += Int(s)
            }
        } else {
            for (j, p) in positions.enumerated() where Int(p) < seqLen {
                fates[Int(p)] = sizes[j] == 1 ? .kept(group: j, size: 1) : .mergedUnknown
            }
        }
        return fates
    }
}

extension RetentionMap {
    /// One SVG per vision span of a stage: each frame's token grid, a cell per token,
    /// coloured by its merged group (tokens kept alone pale, dropped tokens dark).
    static func svg(_ stage: Stage, span: Span) -> String {
        let rows = span.rows, cols = span.cols, frames = span.frameCount
        let cell = max(3, min(9, 216 / max(cols, 1)))
        let gap = 6
        let width = frames * cols * cell + (frames - 1) * gap
        let height = rows * cell
        let stroke = cell >= 6 ? " stroke=\"#fafafa\" stroke-width=\"0.5\"" : ""
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"rmap\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" role=\"img\"><g\(stroke)>"
        var merged = 0, dropped = 0
        for f in 0..<frames {
            for r in 0..<rows {
                for c in 0..<cols {
                    let p = span.start + (f * rows + r) * cols + c
                    let fate = p < stage.fates.count ? stage.fates[p] : .dropped
                    switch fate {
                    case .kept(_, let s) where s > 1: merged += 1
                    case .dropped: dropped += 1
                    default: break
                    }
                    out += "<rect x=\"\(f * (cols * cell + gap) + c * cell)\" y=\"\(r * cell)\" width=\"\(cell)\" height=\"\(cell)\" fill=\"\(colour(fate))\"/>"
                }
            }
        }
        let total = rows * cols * frames
        out.insert(contentsOf: "<title>\(total) tokens: \(total - merged - dropped) kept alone, \(merged) merged into groups, \(dropped) dropped</title>",
                   at: out.index(after: out.firstIndex(of: ">")!))
        return out + "</g></svg>"
    }

    /// Distinct hues for neighbouring groups (golden-angle steps), pale grey for a token kept
    /// alone, near-black for a dropped one.
    static func colour(_ fate: Fate) -> String {
        switch fate {
        case .kept(_, 1): return "#e4e4e7"
        case .kept(let g, _): return "hsl(\((g * 137) % 360),65%,52%)"
        case .mergedUnknown: return "#a1a1aa"
        case .dropped: return "#27272a"
        }
    }
}
