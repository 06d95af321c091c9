/// The latent content of one synthetic image or video: what a vision encoder would have seen.
///
/// Real vision tokens are highly redundant (ToMe, LightKV): neighbouring patches of a photo
/// look alike, the patches of one object look alike, and object boundaries are sharp. A scene
/// reproduces that with a smooth background (a constant plus a linear gradient in latent space)
/// and a few objects (ellipses or rectangles, each with its own latent feature), plus a little
/// per-patch texture noise. In a video the same scene plays over several frames: objects drift a
/// fraction of a patch per frame and the texture noise is temporally correlated (AR(1), ρ = 0.9),
/// so consecutive frames are near-duplicates, as in real clips.
public struct SynthScene: Sendable {
    /// One object in the scene.
    public struct Object: Sendable {
        /// Centre in grid units (row, column) at frame 0.
        public var centre: SIMD2<Float>
        /// Half-extent in grid units (rows, columns).
        public var radius: SIMD2<Float>
        /// Drift per frame in grid units.
        public var velocity: SIMD2<Float>
        public var isEllipse: Bool
        /// Latent feature shared by all of the object's patches.
        public var feature: [Float]
    }

    public let rows: Int
    public let cols: Int
    public let frames: Int
    public let objects: [Object]
    /// `[frames * rows * cols, latentDim]` latent features, row-major, frame after frame.
    public let features: [Float]
    /// For each token, the index of the object covering it, or -1 for background.
    public let labels: [Int16]

    /// Tokens of one frame.
    public var tokensPerFrame: Int { rows * cols }

    /// Builds the scene for `seed`; the same seed always gives the same scene.
    public init(rows: Int, cols: Int, frames: Int, seed: UInt64) {
        let dim = SynthModel.latentDim
        self.rows = rows; self.cols = cols; self.frames = frames
        var rng = SynthRandom(seed, 0x5CE4E)
        let background = rng.normals(dim, scale: 0.8)
        let gradientRows = rng.normals(dim, scale: 0.9)
        let gradientCols = rng.normals(dim, scale: 0.9)

        let objectCount = 3 + rng.below(3)
        var objects: [Object] = []
        for _ in 0..<objectCount {
            let rr = max(1.0, Float(rows) * rng.uniform(0.10...0.24))
            let rc = max(1.0, Float(cols) * rng.uniform(0.10...0.24))
            let centre = SIMD2<Float>(rng.uniform(0.15...0.85) * Float(rows), rng.uniform(0.15...0.85) * Float(cols))
            let velocity = SIMD2<Float>(rng.uniform(-0.5...0.5), rng.uniform(-0.7...0.7))
            objects.append(Object(centre: centre, radius: SIMD2(rr, rc), velocity: velocity,
                                  isEllipse: rng.below(2) == 0, feature: rng.normals(dim, scale: 1.3)))
        }
        self.objects = objects

        let perFrame = rows * cols
        var features = [Float](repeating: 0, count: frames * perFrame * dim)
        var labels = [Int16](repeating: -1, count: frames * perFrame)
        var texture = rng.normals(perFrame * dim, scale: 0.3)
        for f in 0..<frames {
            if f > 0 {
                // AR(1) texture: consecutive frames share 90% of their noise, variance stays constant.
                for i in texture.indices { texture[i] = 0.9 * texture[i] + 0.436 * 0.3 * rng.normal() }
            }
            for r in 0..<rows {
                for c in 0..<cols {
                    let token = f * perFrame + r * cols + c
                    let p = SIMD2<Float>(Float(r) + 0.5, Float(c) + 0.5)
                    var label = -1
                    for (k, o) in objects.enumerated() {  // later objects occlude earlier ones
                        let d = (p - (o.centre + Float(f) * o.velocity)) / o.radius
                        let inside = o.isEllipse ? (d * d).sum() <= 1 : max(abs(d.x), abs(d.y)) <= 1
                        if inside { label = k }
                    }
                    labels[token] = Int16(label)
                    let u = Float(r) / Float(max(rows - 1, 1)) - 0.5, v = Float(c) / Float(max(cols - 1, 1)) - 0.5
                    let base = token * dim
                    for d in 0..<dim {
                        let smooth = label >= 0
                            ? objects[label].feature[d]
                            : background[d] + u * gradientRows[d] + v * gradientCols[d]
                        features[base + d] = smooth + texture[(r * cols + c) * dim + d]
                    }
                }
            }
        }
        self.features = features
        self.labels = labels
    }

    /// Number of tokens (over all frames) that object `k` covers.
    public func tokenCount(object k: Int) -> Int { labels.reduce(0) { $0 + ($1 == Int16(k) ? 1 : 0) } }
}
