/// Keeps text-dense vision spans whole, whatever the reduction it wraps (`dense=F`;
/// docs/design/dense.md).
///
/// A span whose entries differ from their neighbours (a page of text, a chart, a screenshot)
/// carries something in every entry: merging averages different words and eviction drops them.
/// A photo or a video frame is mostly redundant: smooth regions, repeated texture. The guard
/// surveys every layer first and measures, per vision span and layer, the share of its entries
/// with a spatial neighbour whose keys are 0.95 alike (`NearDuplicates`). Its redundancy is the
/// mean of that share over the more redundant half of the layers (early layers hold little
/// redundancy even in photos). A span whose redundancy is below `share` is text-dense: the
/// reduction it wraps sees it as text, which every reduction passes through bit for bit, and
/// reduces the other spans as it would alone. What is kept depends on each span's own keys,
/// never on a prompt.
///
///     var c = DenseSpanGuard(share: 0.6, wrapping: spec.makeCompressor())
///     for pass in 0..<c.surveyPasses { for i in layers { c.survey(layer(i), context: ctx(i)) } }
///     let out = c.compress(layer(0), context: ctx(0))     // then 1, 2, …
public struct DenseSpanGuard: CacheCompressor {
    /// Below this share of near-duplicate entries a span is text-dense (docs/design/dense.md
    /// has the measurement behind it).
    public static let defaultShare = 0.6

    public let share: Double
    private var inner: any CacheCompressor
    /// Per span of the snapshot, per layer surveyed so far: the share of its vision entries
    /// with a near-duplicate neighbour (nil where the span has none standing).
    private var shares: [[Double?]] = []
    /// Span indices found text-dense, once every layer is surveyed.
    private var dense: Set<Int>?
    /// True when every vision span is text-dense: the reduction is not run at all.
    private var allDense = false
    private var layout: VisionLayout?
    /// Vision entries kept, and vision entries given, over the layers compressed so far.
    private var keptVision = 0
    private var givenVision = 0

    public init(share: Double, wrapping inner: any CacheCompressor) {
        self.share = share
        self.inner = inner
    }

    public var surveyPasses: Int { 1 + inner.surveyPasses }

    public mutating func survey(_ layer: KVLayer, context: LayerContext) {
        guard dense == nil else {
            if !allDense { inner.survey(layer, context: guarded(context)) }
            return
        }
        if layout == nil {
            layout = VisionLayout(spans: context.spans, seqLen: context.seqLen)
            shares = [[Double?]](repeating: [], count: context.spans.count)
        }
        let layout = layout!
        let vision = layer.positions.indices.filter { layout.isVision(layer.positions[$0]) }
        let flags = NearDuplicates.flags(layer, vision: vision, layout: layout, threshold: NearDuplicates.threshold)
        var alike = [Int](repeating: 0, count: shares.count), standing = alike
        for (o, j) in vision.enumerated() {
            let span = Int(layout.spanOfPosition[Int(layer.positions[j])])
            standing[span] += 1
            if flags[o] { alike[span] += 1 }
        }
        for s in shares.indices { shares[s].append(standing[s] > 0 ? Double(alike[s]) / Double(standing[s]) : nil) }
        if context.index == context.layerCount - 1 {
            let measured = shares.indices.compactMap { s in redundancy(s).map { (span: s, redundancy: $0) } }
            dense = Set(measured.filter { $0.redundancy < share }.map(\.span))
            allDense = dense!.count == measured.count
        }
    }

    /// Span `s`'s share of near-duplicate entries in its more redundant half of the layers;
    /// nil for a span with no vision entries.
    private func redundancy(_ s: Int) -> Double? {
        let measured = shares[s].compactMap { $0 }.sorted(by: >)
        guard !measured.isEmpty else { return nil }
        let top = measured.prefix((measured.count + 1) / 2)
        return top.reduce(0, +) / Double(top.count)
    }

    public mutating func compress(_ layer: KVLayer, context: LayerContext) -> KVLayer {
        precondition(dense != nil, "the dense-span guard surveys every layer before compressing")
        let out = allDense ? layer : inner.compress(layer, context: guarded(context))
        if let layout {
            givenVision += layer.positions.reduce(0) { $0 + (layout.isVision($1) ? 1 : 0) }
            keptVision += out.positions.reduce(0) { $0 + (layout.isVision($1) ? 1 : 0) }
        }
        return out
    }

    /// `context` with the text-dense spans turned into text, which the wrapped reduction keeps.
    private func guarded(_ context: LayerContext) -> LayerContext {
        guard let dense, !dense.isEmpty else { return context }
        var c = context
        for s in dense { c.spans[s] = .text(c.spans[s].start, c.spans[s].end) }
        return c
    }

    public var record: [String: String] {
        var r = inner.record
        r["dense"] = String(share)
        guard let dense else { return r }
        r["span_redundancy"] = shares.indices.compactMap { s in redundancy(s).map { "\(s):" + String(format: "%.2f", $0) } }
            .joined(separator: ",")
        r["dense_spans"] = dense.isEmpty ? "none" : dense.sorted().map(String.init).joined(separator: ",")
        if !dense.isEmpty && givenVision > 0 {
            // What was kept of every vision span, the ones kept whole included.
            r["vision_retention"] = String(format: "%.4f", Double(keptVision) / Double(givenVision))
        }
        return r
    }
}
