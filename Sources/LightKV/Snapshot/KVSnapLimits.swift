/// Bounds on what a snapshot header may hold, so an input's header costs bounded memory
/// and time to parse whatever its writer put in it (docs/DESIGN.md, "Limits").
///
/// Real kvsnap headers are small: a 32-layer snapshot names 128 tensors in about 15 KB, and
/// spans for hundreds of images fit in tens of KB. Each bound is far above that.
public enum KVSnapLimits {
    /// Largest JSON header, in bytes.
    public static let headerBytes = 4 << 20
    /// Most tensors (4 per layer for 4,096 layers).
    public static let tensors = 16_384
    /// Most metadata entries.
    public static let metadataEntries = 1_024
    /// Largest metadata value, in bytes.
    public static let metadataValueBytes = 1 << 20
}
