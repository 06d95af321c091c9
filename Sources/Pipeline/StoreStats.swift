import Foundation
import Store

/// Totals over a store, for `kvstore stats`.
public struct StoreStats: Sendable, Codable {
    public var entries: Int
    public var pinned: Int
    public var bytesIn: Int
    /// Every entry's own blob plus every segment once (docs/design/segments.md).
    public var bytesOut: Int
    /// Shared prefixes stored once (segments rows name) and their bytes (part of `bytesOut`).
    public var segments: Int
    public var segmentBytes: Int
    public var blobFiles: Int
    public var blobBytes: Int
    public var indexBytes: Int
    public var models: [String: Int]
    public var policies: [String: Int]
    public var sources: Int

    public var ratio: Double { bytesOut > 0 ? Double(bytesIn) / Double(bytesOut) : 0 }

    public init(root: StoreRoot) throws {
        let all = try root.index.all()
        entries = all.count
        pinned = all.filter(\.pinned).count
        bytesIn = all.reduce(0) { $0 + $1.bytesIn }
        (segments, segmentBytes) = try root.index.segmentTotals()
        bytesOut = all.reduce(0) { $0 + $1.bytesOut } + segmentBytes
        let blobs = try root.blobs.inventory()
        blobFiles = blobs.count
        blobBytes = blobs.values.reduce(0) { $0 + $1.bytes }
        indexBytes = try root.index.storageBytes()
        models = Dictionary(all.map { ($0.model, 1) }, uniquingKeysWith: +)
        policies = Dictionary(all.map { ($0.policy, 1) }, uniquingKeysWith: +)
        sources = try root.index.db.query("SELECT COUNT(DISTINCT source) AS n FROM sources").first?.int("n") ?? 0
    }
}
