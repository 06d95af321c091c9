/// A merged layer that cannot be expanded.
public enum ExpandError: Error, Equatable, CustomStringConvertible {
    /// Entry at `position` stands for `size` tokens but the layer does not say which.
    case membersUnknown(position: Int32, size: Int32)

    public var description: String {
        switch self {
        case .membersUnknown(let p, let s):
            "entry at position \(p) stands for \(s) tokens but the layer carries no member positions (it arrived merged), so it cannot be expanded"
        }
    }
}

extension KVLayer {
    /// Each merged entry repeated once per member, at that member's original position, with
    /// size 1; entries in ascending position order.
    ///
    /// For engines without a per-entry logit bias: plain attention over the expanded layer
    /// equals proportional attention (`+ log(size)`) over this one, because `size` copies of a
    /// logit `s` contribute `size·e^s = e^(s + log size)` to the softmax and `size` times the
    /// value to the output. Storage and transfer keep the merged form; only the engine's copy
    /// grows back.
    ///
    ///     let plain = try merged.expanded()   // plain.sizes are all 1
    public func expanded() throws(ExpandError) -> KVLayer {
        let n = count
        var members: [Int32] = []
        if let m = memberPositions {
            members = m
        } else {
            for j in 0..<n where sizes[j] != 1 { throw .membersUnknown(position: positions[j], size: sizes[j]) }
            return self
        }
        // (original position, source entry), sorted by position.
        var order: [(Int32, Int)] = []
        order.reserveCapacity(members.count)
        var o = 0
        for j in 0..<n {
            for _ in 0..<Int(sizes[j]) { order.append((members[o], j)); o += 1 }
        }
        order.sort { $0.0 < $1.0 }
        let total = order.count
        let (k, v) = gatheringRows(order.map(\.1))
        let positions = order.map(\.0)
        return KVLayer(kvHeads: kvHeads, headDim: headDim, vHeadDim: vHeadDim, keys: k, values: v,
                       positions: positions, sizes: [Int32](repeating: 1, count: total), memberPositions: positions)
    }
}
