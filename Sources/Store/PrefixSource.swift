import Foundation
import LightKV

/// Names the unreduced prefix a prompt-guided segment was reduced from, and the policy that
/// reduced it (docs/design/segments.md, "A guided prefix"): a later question about the same
/// prefix reuses that segment instead of storing its own.
///
/// The keys and values are hashed, not only the token ids: ids name a prefix's text, and an
/// image's tokens are the same placeholders for every image, so ids alone would let one
/// image's reduction be served for another's. So is the layout the producer declared for the
/// spans inside the prefix (a reduction windows and budgets by it: the same keys declared as
/// another grid or as frames reduce another way). XXH3-128, as blob content names, over
/// `"kvstore-prefix-source-v2 r" revision "\n" policy "\n" model "\n" dtype p layers kvHeads headDim vHeadDim "\n"`
/// (`ReductionSpec.revision`: what the same policy name reduces to may change between releases),
/// the spans inside the prefix as the segment's header holds them (JSON) and `"\n"`, the ids
/// before `p`, then for each layer the row digests (`rows`) of its keys and of its values.
public enum PrefixSource {
    /// A key or value tensor's share: XXH3-128 of its rows at positions `[0, end)`, head by
    /// head, as 32 hex digits. Computed while the input is hashed for its id (`Rows`), so the
    /// prefix is not read a second time.
    public static func rows(_ data: UnsafeRawBufferPointer, heads: Int, seqLen: Int, rowBytes: Int, end: Int) -> String {
        let digest = ContentDigest()
        for h in 0..<heads {
            let start = h * seqLen * rowBytes
            digest.update(UnsafeRawBufferPointer(rebasing: data[start ..< start + end * rowBytes]))
        }
        return digest.hex
    }

    /// The source, from every layer's key and value row digests.
    public static func of(_ snapshot: Snapshot, end: Int, policy: String, rows: Rows) -> String {
        let digest = ContentDigest()
        let shape = "\(snapshot.layerCount) \(snapshot.kvHeads) \(snapshot.headDim) \(snapshot.vHeadDim)"
        let spans = SnapshotMetadata.encode(snapshot.metadata.spans.filter { $0.end <= end })
        let head = "kvstore-prefix-source-v2 r\(ReductionSpec.revision)\n\(policy)\n\(snapshot.metadata.model)\n\(snapshot.dtype.rawValue) \(end) \(shape)\n\(spans)\n"
        Array(head.utf8).withUnsafeBytes { digest.update($0) }
        (snapshot.tokenIDs() ?? []).prefix(end).map(\.littleEndian).withUnsafeBytes { digest.update($0) }
        for d in rows.digests() { Array(d.utf8).withUnsafeBytes { digest.update($0) } }
        return digest.hex
    }

    /// Row digests of every layer's keys and values, collected from the threads that read them
    /// (`ContentID.of`'s `visit`).
    public final class Rows: @unchecked Sendable {
        private let lock = NSLock()
        private var found: [String]
        private let slots: [String: (slot: Int, rowBytes: Int)]
        private let heads: Int, seqLen: Int, end: Int

        public init(_ snapshot: Snapshot, end: Int) {
            var slots: [String: (slot: Int, rowBytes: Int)] = [:]
            for (i, l) in snapshot.layers.enumerated() {
                slots[l.key.name] = (2 * i, snapshot.headDim * snapshot.dtype.size)
                slots[l.value.name] = (2 * i + 1, snapshot.vHeadDim * snapshot.dtype.size)
            }
            self.slots = slots
            found = [String](repeating: "", count: 2 * snapshot.layerCount)
            heads = snapshot.kvHeads; seqLen = snapshot.seqLen; self.end = end
        }

        /// Takes a tensor's bytes while they are at hand; anything but keys and values is ignored.
        public func visit(_ tensor: TensorInfo, _ data: UnsafeRawBufferPointer) {
            guard let s = slots[tensor.name] else { return }
            let digest = PrefixSource.rows(data, heads: heads, seqLen: seqLen, rowBytes: s.rowBytes, end: end)
            lock.lock(); found[s.slot] = digest; lock.unlock()
        }

        /// Each layer's key digest then its value digest, in layer order.
        func digests() -> [String] {
            lock.lock(); defer { lock.unlock() }
            precondition(!found.contains(""), "every key and value tensor is visited before the source is taken")
            return found
        }
    }
}
