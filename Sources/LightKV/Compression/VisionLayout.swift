/// Where each original position sits: in text, or at (frame, row, col) of an image or video.
///
/// Built once per snapshot from its spans; compressors look entries up by their original
/// position, which is what makes already-merged inputs work (an entry stands where its
/// representative stood).
public struct VisionLayout: Sendable {
    /// One image, or one frame of a video.
    public struct Frame: Sendable, Equatable {
        public var span: Int
        public var start: Int
        public var rows: Int
        public var cols: Int
    }

    public let frames: [Frame]
    /// Frame index of each original position, -1 for text.
    public let frameOfPosition: [Int32]
    /// Span index of each original position.
    public let spanOfPosition: [Int32]
    public let promptRange: Range<Int>?
    public let visionTokenCount: Int

    public init(spans: [Span], seqLen: Int) {
        var frames: [Frame] = []
        var frameOf = [Int32](repeating: -1, count: seqLen)
        var spanOf = [Int32](repeating: 0, count: seqLen)
        for (s, span) in spans.enumerated() {
            for p in span.start..<min(span.end, seqLen) { spanOf[p] = Int32(s) }
            guard span.isVision else { continue }
            let perFrame = span.rows * span.cols
            for f in 0..<span.frameCount {
                let start = span.start + f * perFrame
                for p in start..<min(start + perFrame, seqLen) { frameOf[p] = Int32(frames.count) }
                frames.append(Frame(span: s, start: start, rows: span.rows, cols: span.cols))
            }
        }
        self.frames = frames
        self.frameOfPosition = frameOf
        self.spanOfPosition = spanOf
        self.promptRange = spans.promptRange
        self.visionTokenCount = spans.visionTokenCount
    }

    @inline(__always) public func isVision(_ position: Int32) -> Bool { frameOfPosition[Int(position)] >= 0 }

    /// (row, col) of a vision position inside its frame.
    @inline(__always) public func cell(_ position: Int32) -> (row: Int, col: Int) {
        let f = frames[Int(frameOfPosition[Int(position)])]
        let offset = Int(position) - f.start
        return (offset / f.cols, offset % f.cols)
    }

    /// Band of `index` when `length` cells are cut into `parts` bands, the first
    /// `length % parts` bands one cell longer (the reference's uneven edges).
    @inline(__always) public static func band(_ index: Int, length: Int, parts: Int) -> Int {
        let base = length / parts, rem = length % parts
        let long = rem * (base + 1)
        return index < long ? index / (base + 1) : rem + (index - long) / base
    }

    /// Windows per side a frame with `standing` entries is cut into at a stage asking for
    /// `requested`: the largest `w ≤ requested` (and ≤ the grid's sides) that leaves windows of
    /// at least 8 entries on average, and never below 1.
    ///
    /// The reference skips the stage altogether when an image has fewer than `8·W²` tokens;
    /// shrinking the grid instead keeps the schedule's retention on small images and later
    /// stages, while matching still happens among near neighbours.
    public static func effectiveWindows(requested: Int, standing: Int, rows: Int, cols: Int) -> Int {
        var w = max(1, min(requested, rows, cols))
        while w > 1 && standing < 8 * w * w { w -= 1 }
        return w
    }
}
