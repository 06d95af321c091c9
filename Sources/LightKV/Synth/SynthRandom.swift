/// The deterministic random numbers behind synthetic snapshots.
///
/// A snapshot must be byte-identical for a given seed on every machine and Swift version, so the
/// generator is spelled out here (xoshiro256** seeded by SplitMix64) rather than borrowed from the
/// standard library, whose `SystemRandomNumberGenerator` is not seedable.
public struct SynthRandom: RandomNumberGenerator, Sendable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    /// A generator for `seed`; every distinct seed gives an unrelated stream.
    public init(seed: UInt64) {
        var sm = seed
        s0 = Self.splitMix(&sm); s1 = Self.splitMix(&sm); s2 = Self.splitMix(&sm); s3 = Self.splitMix(&sm)
    }

    /// A generator for a tuple of identifiers (for example seed, layer, head, purpose), so that
    /// independent parts of a snapshot draw from independent streams whatever order they run in.
    public init(_ parts: UInt64...) {
        self.init(seed: Self.mix(parts))
    }

    /// The same stream as the variadic `init(a, b, c)`, without allocating: used
    /// once per token and head in the hot loop.
    @inline(__always)
    public init(mixing a: UInt64, _ b: UInt64, _ c: UInt64) {
        self.init(seed: Self.fold(Self.fold(Self.fold(Self.mixStart, a), b), c))
    }

    /// Folds identifiers into one well-mixed 64-bit value.
    public static func mix(_ parts: [UInt64]) -> UInt64 {
        parts.reduce(mixStart, fold)
    }

    private static let mixStart: UInt64 = 0x9E37_79B9_7F4A_7C15

    @inline(__always)
    private static func fold(_ h: UInt64, _ p: UInt64) -> UInt64 {
        var x = h ^ p
        return splitMix(&x) &+ 0x632B_E59B_D9B4_E019
    }

    /// A stable 64-bit hash of a string (FNV-1a), e.g. to seed a model's weights from its name.
    public static func hash(_ text: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    @inline(__always)
    static func splitMix(_ x: inout UInt64) -> UInt64 {
        x &+= 0x9E37_79B9_7F4A_7C15
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }

    /// Uniform in [0, 1).
    @inline(__always)
    public mutating func uniform() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in `range`.
    @inline(__always)
    public mutating func uniform(_ range: ClosedRange<Float>) -> Float {
        range.lowerBound + (range.upperBound - range.lowerBound) * uniform()
    }

    /// An integer uniform in `0..<n` (n > 0).
    @inline(__always)
    public mutating func below(_ n: Int) -> Int {
        Int((next() >> 33) % UInt64(n))
    }

    /// Approximately standard normal: the sum of the four 16-bit lanes of one 64-bit draw
    /// (Irwin–Hall with n = 4), rescaled to unit variance.
    ///
    /// One generator call and no transcendental function per sample: the noise of a llava-sized
    /// snapshot is ~170M samples, where Box–Muller would dominate the generation time. Tails
    /// stop at ±3.46σ, which is harmless for noise (outliers are modelled explicitly).
    @inline(__always)
    public mutating func normal() -> Float {
        let r = next()
        let a = (r & 0xFFFF) &+ ((r >> 16) & 0xFFFF) &+ ((r >> 32) & 0xFFFF) &+ (r >> 48)
        // mean 4 * 32767.5, variance 4 * (65536² - 1) / 12
        return (Float(a) - 131_070.0) * (1.0 / 37_837.2)
    }

    /// Fills `buffer` with `scale` times approximately standard normal samples.
    public mutating func fillNormal(_ buffer: UnsafeMutableBufferPointer<Float>, scale: Float) {
        for i in buffer.indices { buffer[i] = normal() * scale }
    }

    /// Adds `scale` times approximately standard normal samples (the same Irwin–Hall construction
    /// as `normal()`) to `count` floats.
    ///
    /// This is where most of the generation time goes, so it runs four xoshiro256** streams side
    /// by side in `SIMD4<UInt64>` lanes (seeded from this generator through SplitMix64), which
    /// the compiler maps onto AVX2; the multiplications by 5 and 9 are shifts and adds.
    public mutating func addNormal(_ buffer: UnsafeMutablePointer<Float>, count: Int, scale: Float) {
        var i = 0
        if count >= 8 {
            var sm = next()
            func lane() -> SIMD4<UInt64> {
                SIMD4(Self.splitMix(&sm), Self.splitMix(&sm), Self.splitMix(&sm), Self.splitMix(&sm))
            }
            var s0 = lane(), s1 = lane(), s2 = lane(), s3 = lane()
            let mask = SIMD4<UInt64>(repeating: 0xFFFF)
            let k = scale * (1.0 / 37_837.2), offset = SIMD4<Float>(repeating: 131_070.0)
            while i + 4 <= count {
                let x5 = (s1 &<< 2) &+ s1
                let rotated = (x5 &<< 7) | (x5 &>> 57)
                let r = (rotated &<< 3) &+ rotated
                let t = s1 &<< 17
                s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
                s2 ^= t
                s3 = (s3 &<< 45) | (s3 &>> 19)
                let low = (r & mask) &+ ((r &>> 16) & mask)
                let high = ((r &>> 32) & mask) &+ (r &>> 48)
                let sum = SIMD4<Int32>(truncatingIfNeeded: low &+ high)
                let noise = (SIMD4<Float>(sum) - offset) * k
                let p = UnsafeMutableRawPointer(buffer + i)
                p.storeBytes(of: p.loadUnaligned(as: SIMD4<Float>.self) + noise, as: SIMD4<Float>.self)
                i += 4
            }
        }
        while i < count { buffer[i] += normal() * scale; i += 1 }
    }

    /// A vector of `n` normal samples scaled by `scale`.
    public mutating func normals(_ n: Int, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in normal() * scale }
    }
}
