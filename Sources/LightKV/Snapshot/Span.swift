/// One contiguous run of tokens in a snapshot: text, one image, or one video.
public struct Span: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable { case text, image, video }
    /// Who wrote a text span; the `prompt` is the text that guides compression.
    public enum Role: String, Sendable, Codable { case system, prompt, other }

    public var kind: Kind
    public var start: Int
    /// Exclusive.
    public var end: Int
    public var role: Role?
    /// `[rows, cols]` of one frame's token grid (image and video spans).
    public var grid: [Int]?
    /// Frames of a video span.
    public var frames: Int?
    /// For example `sha256:<hex>` of the image bytes.
    public var source: String?

    public init(kind: Kind, start: Int, end: Int, role: Role? = nil, grid: [Int]? = nil,
                frames: Int? = nil, source: String? = nil) {
        self.kind = kind; self.start = start; self.end = end; self.role = role
        self.grid = grid; self.frames = frames; self.source = source
    }

    public var count: Int { end - start }
    public var isVision: Bool { kind != .text }
    public var rows: Int { grid?[0] ?? 0 }
    public var cols: Int { grid?[1] ?? 0 }
    /// Frames, 1 for an image.
    public var frameCount: Int { kind == .video ? (frames ?? 1) : 1 }

    public static func text(_ start: Int, _ end: Int, role: Role? = nil) -> Span {
        Span(kind: .text, start: start, end: end, role: role)
    }
    public static func image(_ start: Int, rows: Int, cols: Int, source: String? = nil) -> Span {
        Span(kind: .image, start: start, end: start + rows * cols, grid: [rows, cols], source: source)
    }
    public static func video(_ start: Int, rows: Int, cols: Int, frames: Int, source: String? = nil) -> Span {
        Span(kind: .video, start: start, end: start + rows * cols * frames, grid: [rows, cols],
             frames: frames, source: source)
    }
}

extension [Span] {
    /// Checks that the spans tile `[0, seqLen)` and that vision spans are well formed.
    public func validate(seqLen: Int) throws(KVSnapError) {
        var next = 0
        for (i, span) in enumerated() {
            guard span.start == next, span.end > span.start else {
                throw .badSpans("span \(i) covers [\(span.start), \(span.end)) but the previous span ended at \(next): spans must tile [0, \(seqLen)) in order with no gap or overlap")
            }
            if span.isVision {
                guard let grid = span.grid, grid.count == 2, grid[0] > 0, grid[1] > 0 else {
                    throw .badSpans("span \(i) (\(span.kind.rawValue)) needs \"grid\": [rows, cols] with positive values")
                }
                if span.kind == .video, (span.frames ?? 0) <= 0 {
                    throw .badSpans("span \(i) (video) needs a positive \"frames\"")
                }
                let (area, o1) = grid[0].multipliedReportingOverflow(by: grid[1])
                let (expected, o2) = area.multipliedReportingOverflow(by: span.frameCount)
                guard !o1, !o2, expected == span.count else {
                    let product = o1 || o2 ? "more than Int.max" : String(expected)
                    throw .badSpans("span \(i): rows*cols*frames = \(grid[0])*\(grid[1])*\(span.frameCount) = \(product) but the span holds \(span.count) tokens")
                }
            }
            next = span.end
        }
        guard next == seqLen else {
            throw .badSpans("spans end at \(next) but seq_len is \(seqLen)")
        }
    }

    /// Positions covered by the prompt span(s); the last text span when none is marked.
    public var promptRange: Range<Int>? {
        if let p = last(where: { $0.kind == .text && $0.role == .prompt }) { return p.start..<p.end }
        return last(where: { $0.kind == .text }).map { $0.start..<$0.end }
    }

    /// Number of vision tokens in all spans.
    public var visionTokenCount: Int { filter(\.isVision).reduce(0) { $0 + $1.count } }
}
