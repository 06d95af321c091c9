import LightKV
import Store

/// A fetch settled before its first byte: the entry, its open pack, and the output's layout.
public struct FetchPlan: @unchecked Sendable {
    public let record: EntryRecord
    public let pack: PackReader
    /// The segment holding the entry's shared prefix, when it is segmented.
    public let segment: PackReader?
    public let options: FetchOptions
    /// The kvsnap layout; nil when the pack itself is written (`raw`).
    public let layout: SafetensorsLayout?
    /// Whether the blobs' content names were checked when the plan was made; if not, `write`
    /// checks them before it finishes (a sink that publishes nothing until then).
    public let contentChecked: Bool

    /// Bytes the output will hold.
    public var byteCount: Int {
        guard let layout else { return pack.size }
        return layout.header.count + layout.entries.reduce(0) { $0 + $1.byteCount }
    }
}
