extension KVLayer {
    /// `self`'s entries followed by `next`'s, head by head: a segmented entry's layer is its
    /// segment's (the shared prefix) joined with its own (docs/design/segments.md).
    public func joined(_ next: KVLayer) -> KVLayer {
        precondition(kvHeads == next.kvHeads && headDim == next.headDim && vHeadDim == next.vHeadDim, "layers of different shapes")
        func rows(_ a: [Float], _ b: [Float], dim: Int) -> [Float] {
            var out = [Float](); out.reserveCapacity(a.count + b.count)
            for h in 0..<kvHeads {
                out += a[(h * count * dim)..<((h + 1) * count * dim)]
                out += b[(h * next.count * dim)..<((h + 1) * next.count * dim)]
            }
            return out
        }
        // Members are known when each side tracks them or merged nothing.
        func known(_ l: KVLayer) -> [Int32]? { l.memberPositions ?? (l.sizes.allSatisfy { $0 == 1 } ? l.positions : nil) }
        var members: [Int32]?
        if memberPositions != nil || next.memberPositions != nil, let a = known(self), let b = known(next) { members = a + b }
        return KVLayer(kvHeads: kvHeads, headDim: headDim, vHeadDim: vHeadDim, keys: rows(keys, next.keys, dim: headDim),
                       values: rows(values, next.values, dim: vHeadDim), positions: positions + next.positions,
                       sizes: sizes + next.sizes, memberPositions: members)
    }
}
