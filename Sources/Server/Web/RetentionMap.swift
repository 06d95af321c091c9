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

    /// Reads every layer's positions, sizes and member positions from the pack (after its
    /// segment's, for a segmented entry: docs/design/segments.md).
    init(pack: PackReader, segment: PackReader? = nil) throws {
        let seqLen = pack.header.seqLen
        var stages: [Stage] = []
        var previous: (positions: [Int32], sizes: [Int32], members: [Int32]?)?
        for i in 0..<pack.header.layers.count {
            let section = try pack.section(i)
            var current = (positions: section.positions, sizes: section.sizes, members: section.memberPositions)
            if let shared = try segment?.section(i) {
                // A segment is never reduced: its entries stand for their own positions.
                current = (shared.positions + current.positions, shared.sizes + current.sizes,
                           current.members.map { shared.positions + $0 })
            }
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
    /// Colours for merged groups: twelve hues far apart, none near the pale grey of a token
    /// kept alone, the grey of an unrecorded merge or the near-black of a dropped token.
    static let palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
                          "#b07aa1", "#ff9da7", "#9c755f", "#17becf", "#bcbd22", "#8c564b"]

    /// A vision span's token grid in one stage: an image is one SVG; a video is one SVG per
    /// frame, each captioned with its number, wrapping to the width of the page.
    static func drawing(_ stage: Stage, span: Span) -> String {
        let colours = groupColours(stage, span: span)
        guard span.frameCount > 1 else { return svg(stage, span: span, frame: 0, colours: colours) }
        return "<div class=\"frames\">" + (0..<span.frameCount).map { f in
            "<figure>\(svg(stage, span: span, frame: f, colours: colours))<figcaption>frame \(f + 1)</figcaption></figure>"
        }.joined() + "</div>"
    }

    /// One frame's grid, a cell per token. Each merged group is one `<path class="g">` of
    /// horizontal runs in its colour; the tokens kept alone, dropped, or merged without a
    /// record are one path each. (A `<rect>` per token made a 32-layer image entry's page
    /// a megabyte.)
    static func svg(_ stage: Stage, span: Span, frame: Int, colours: [Int: Int]) -> String {
        let rows = span.rows, cols = span.cols
        let cell = max(3, min(9, 216 / max(cols, 1)))
        let width = cols * cell, height = rows * cell
        var paths: [String: (fill: String, group: Bool, d: String)] = [:], order: [String] = []
        var merged = 0, dropped = 0
        func fate(_ r: Int, _ c: Int) -> Fate {
            let p = span.start + (frame * rows + r) * cols + c
            return p < stage.fates.count ? stage.fates[p] : .dropped
        }
        func key(_ fate: Fate) -> (key: String, fill: String, group: Bool) {
            switch fate {
            case .kept(let g, let s) where s > 1: ("g\(g)", palette[colours[g] ?? 0], true)
            case .kept: ("alone", "#e4e4e7", false)
            case .mergedUnknown: ("unrecorded", "#a1a1aa", false)
            case .dropped: ("dropped", "#27272a", false)
            }
        }
        for r in 0..<rows {
            var c = 0
            while c < cols {
                let f = fate(r, c), k = key(f)
                var end = c + 1
                while end < cols && key(fate(r, end)).key == k.key { end += 1 }
                switch f {
                case .kept(_, let s) where s > 1: merged += end - c
                case .dropped: dropped += end - c
                default: break
                }
                if paths[k.key] == nil { paths[k.key] = (k.fill, k.group, ""); order.append(k.key) }
                paths[k.key]!.d += "M\(c * cell) \(r * cell)h\((end - c) * cell)v\(cell)h-\((end - c) * cell)z"
                c = end
            }
        }
        let total = rows * cols
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"rmap\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" "
            + "role=\"img\" shape-rendering=\"crispEdges\"><title>\(total) tokens: \(total - merged - dropped) kept alone, \(merged) merged into groups, "
            + "\(dropped) dropped</title>"
        for k in order {
            let p = paths[k]!
            out += "<path\(p.group ? " class=\"g\"" : "") fill=\"\(p.fill)\" d=\"\(p.d)\"/>"
        }
        return out + "</svg>"
    }

    /// A palette index for each merged group of `span` in `stage`, such that groups whose
    /// tokens touch (left, right, above or below, in one frame) differ: groups are coloured in
    /// the order they first appear, each with the first colour none of its neighbours has
    /// (with more neighbours than colours, the one fewest of them have).
    static func groupColours(_ stage: Stage, span: Span) -> [Int: Int] {
        let rows = span.rows, cols = span.cols
        func group(_ f: Int, _ r: Int, _ c: Int) -> Int? {
            let p = span.start + (f * rows + r) * cols + c
            guard p < stage.fates.count, case .kept(let g, let s) = stage.fates[p], s > 1 else { return nil }
            return g
        }
        var neighbours: [Int: Set<Int>] = [:], order: [Int] = [], seen: Set<Int> = []
        for f in 0..<span.frameCount {
            for r in 0..<rows {
                for c in 0..<cols {
                    guard let g = group(f, r, c) else { continue }
                    if seen.insert(g).inserted { order.append(g) }
                    for (nr, nc) in [(r, c + 1), (r + 1, c)] where nr < rows && nc < cols {
                        if let h = group(f, nr, nc), h != g {
                            neighbours[g, default: []].insert(h)
                            neighbours[h, default: []].insert(g)
                        }
                    }
                }
            }
        }
        var colours: [Int: Int] = [:]
        for g in order {
            var used = [Int](repeating: 0, count: palette.count)
            for h in neighbours[g] ?? [] { if let c = colours[h] { used[c] += 1 } }
            colours[g] = used.firstIndex(of: 0) ?? used.indices.min { used[$0] < used[$1] }!
        }
        return colours
    }
}
