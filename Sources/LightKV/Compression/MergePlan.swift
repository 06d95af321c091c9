/// Which of a layer's vision entries merge into which: groups, each named by its
/// representative's original position.
///
/// Entries are indices into one input layer. A plan is applied by forming, for every group,
/// the weighted mean of its members' keys and values (weights from `PromptAttention`), so a
/// group's weight is the sum of its members' and keeps accumulating as groups grow.
public struct MergePlan: Sendable {
    public struct Group: Sendable, Equatable {
        /// Original position the merged entry stands at: the B token the group formed around.
        public var representative: Int32
        /// Entry indices, ascending.
        public var members: [Int]
    }

    /// Ordered by representative position.
    public var groups: [Group]

    public init(groups: [Group]) { self.groups = groups }

    /// Every entry in a group of its own.
    public static func singletons(_ entries: [Int], layer: KVLayer) -> MergePlan {
        MergePlan(groups: entries.map { Group(representative: layer.positions[$0], members: [$0]) })
    }

    /// Merges groups: `absorbed[g] = h` moves group `g`'s members into group `h` (one level:
    /// a group that absorbs is never absorbed in the same round).
    public func merging(_ absorbed: [Int: Int]) -> MergePlan {
        guard !absorbed.isEmpty else { return self }
        var members = groups.map(\.members)
        for (from, into) in absorbed { members[into] += members[from] }
        var out: [Group] = []
        out.reserveCapacity(groups.count - absorbed.count)
        for (g, group) in groups.enumerated() where absorbed[g] == nil {
            out.append(Group(representative: group.representative, members: members[g].sorted()))
        }
        return MergePlan(groups: out)
    }

    /// Weighted-mean rows of each group, `rows` floats per head, written for group `g` and
    /// head `h` at `dest + h·headStride + slot[g]·dim`.
    ///
    /// `representativeOnly` takes the representative member's own row instead of the mean
    /// (the `key=rep` rule); `renormalise` rescales each merged row to the weighted mean of
    /// its members' norms. Weights that sum to zero or less fall back to member sizes.
    static func combine(_ source: UnsafePointer<Float>, count n: Int, heads: Int, dim: Int, layer: KVLayer,
                        groups: [Group], weights: [Float], representativeOnly: Bool, renormalise: Bool,
                        dest: UnsafeMutablePointer<Float>, headStride: Int, slot: [Int]) {
        for (g, group) in groups.enumerated() {
            var w = group.members.map { weights[$0] }
            var total = w.reduce(0, +)
            if !(total > 0) || !total.isFinite {
                w = group.members.map { Float(layer.sizes[$0]) }
                total = w.reduce(0, +)
            }
            var repMember: Int?
            if representativeOnly || group.members.count == 1 {
                repMember = group.members.first { layer.positions[$0] == group.representative } ?? (group.members.count == 1 ? group.members[0] : nil)
            }
            for h in 0..<heads {
                let out = dest + h * headStride + slot[g] * dim
                if let j = repMember {
                    out.update(from: source + (h * n + j) * dim, count: dim)
                    continue
                }
                out.update(repeating: 0, count: dim)
                var normSum: Float = 0
                for (k, j) in group.members.enumerated() {
                    let row = source + (h * n + j) * dim
                    VectorKernels.axpy(w[k] / total, row, out, dim)
                    if renormalise { normSum += w[k] / total * VectorKernels.dot(row, row, dim).squareRoot() }
                }
                if renormalise {
                    let norm = VectorKernels.dot(out, out, dim).squareRoot()
                    if norm > 0 { VectorKernels.scale(out, normSum / norm, dim) }
                }
            }
        }
    }

    /// Unit-norm matching features, one row of `heads·headDim` floats per group: the group's
    /// keys as the key rule forms them, concatenated over kv heads.
    func features(layer: KVLayer, weights: [Float], keyRule: LightKVSettings.KeyRule, renormalise: Bool) -> [Float] {
        let g = groups.count, dim = layer.kvHeads * layer.headDim
        var f = [Float](repeating: 0, count: g * dim)
        f.withUnsafeMutableBufferPointer { fb in
            layer.keys.withUnsafeBufferPointer { kb in
                Self.combine(kb.baseAddress!, count: layer.count, heads: layer.kvHeads, dim: layer.headDim, layer: layer,
                             groups: groups, weights: weights, representativeOnly: keyRule == .rep,
                             renormalise: renormalise, dest: fb.baseAddress!, headStride: layer.headDim,
                             slot: (0..<g).map { $0 * layer.kvHeads })
            }
            for r in 0..<g {
                let row = fb.baseAddress! + r * dim
                let norm = VectorKernels.dot(row, row, dim).squareRoot()
                VectorKernels.scale(row, 1 / max(norm, 1e-8), dim)
            }
        }
        return f
    }

    /// The output layer: `text` entries copied bit for bit, one entry per group, all in
    /// ascending position; sizes are member-size sums, member positions tracked when known.
    func apply(to layer: KVLayer, text: [Int], weights: [Float], keyRule: LightKVSettings.KeyRule,
               renormalise: Bool) -> KVLayer {
        let n = layer.count
        // Merge text entries and groups by position.
        var order: [(position: Int32, text: Int, group: Int)] = []
        order.reserveCapacity(text.count + groups.count)
        for j in text { order.append((layer.positions[j], j, -1)) }
        for (g, group) in groups.enumerated() { order.append((group.representative, -1, g)) }
        order.sort { $0.position < $1.position }
        let outN = order.count
        var slot = [Int](repeating: 0, count: groups.count)
        var positions = [Int32](repeating: 0, count: outN)
        var sizes = [Int32](repeating: 0, count: outN)
        for (o, item) in order.enumerated() {
            positions[o] = item.position
            if item.group >= 0 {
                slot[item.group] = o
                sizes[o] = groups[item.group].members.reduce(0) { $0 + layer.sizes[$1] }
            } else {
                sizes[o] = layer.sizes[item.text]
            }
        }
        var members: [Int32]?
        let inputMembers = layer.memberPositions
        if inputMembers != nil || layer.sizes.allSatisfy({ $0 == 1 }) {
            var offsets = [Int](repeating: 0, count: n + 1)
            for j in 0..<n { offsets[j + 1] = offsets[j] + Int(layer.sizes[j]) }
            func of(_ j: Int) -> ArraySlice<Int32> {
                inputMembers.map { $0[offsets[j]..<offsets[j + 1]] } ?? [layer.positions[j]]
            }
            var m: [Int32] = []
            m.reserveCapacity(offsets[n])
            for item in order {
                if item.group >= 0 { m += groups[item.group].members.flatMap { of($0) }.sorted() } else { m += of(item.text) }
            }
            members = m
        }
        let kd = layer.headDim, vd = layer.vHeadDim, heads = layer.kvHeads
        var keys = [Float](repeating: 0, count: heads * outN * kd)
        var values = [Float](repeating: 0, count: heads * outN * vd)
        layer.keys.withUnsafeBufferPointer { ks in
            layer.values.withUnsafeBufferPointer { vs in
                keys.withUnsafeMutableBufferPointer { ko in
                    values.withUnsafeMutableBufferPointer { vo in
                        for h in 0..<heads {
                            for (o, item) in order.enumerated() where item.group < 0 {
                                (ko.baseAddress! + (h * outN + o) * kd).update(from: ks.baseAddress! + (h * n + item.text) * kd, count: kd)
                                (vo.baseAddress! + (h * outN + o) * vd).update(from: vs.baseAddress! + (h * n + item.text) * vd, count: vd)
                            }
                        }
                        Self.combine(ks.baseAddress!, count: n, heads: heads, dim: kd, layer: layer, groups: groups,
                                     weights: weights, representativeOnly: keyRule == .rep, renormalise: renormalise,
                                     dest: ko.baseAddress!, headStride: outN * kd, slot: slot)
                        Self.combine(vs.baseAddress!, count: n, heads: heads, dim: vd, layer: layer, groups: groups,
                                     weights: weights, representativeOnly: false, renormalise: false,
                                     dest: vo.baseAddress!, headStride: outN * vd, slot: slot)
                    }
                }
            }
        }
        return KVLayer(kvHeads: heads, headDim: kd, vHeadDim: vd, keys: keys, values: values,
                       positions: positions, sizes: sizes, memberPositions: members)
    }
}
