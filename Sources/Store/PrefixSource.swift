import Dispatch
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
/// before `p`, then each layer's digest of its keys and values at positions `[0, p)`, head by head.
public enum PrefixSource {
    /// `release` gets each tensor's byte range once hashed, so a caller streaming from a
    /// memory map can drop its pages (`MappedFile.release`) as `ContentID` does.
    public static func of(_ snapshot: Snapshot, end: Int, policy: String,
                          release: @Sendable (Range<Int>) -> Void = { _ in }) -> String {
        let layers = snapshot.layers
        let digests = UnsafeMutableBufferPointer<String>.allocate(capacity: layers.count)
        digests.initialize(repeating: "")
        defer { digests.deallocate() }
        let width = snapshot.dtype.size, n = snapshot.seqLen, heads = snapshot.kvHeads
        DispatchQueue.concurrentPerform(iterations: layers.count) { i in
            let digest = ContentDigest()
            for (tensor, dim) in [(layers[i].key, snapshot.headDim), (layers[i].value, snapshot.vHeadDim)] {
                let data = snapshot.data(tensor)
                for h in 0..<heads {
                    let start = h * n * dim * width
                    digest.update(UnsafeRawBufferPointer(rebasing: data[start ..< start + end * dim * width]))
                }
                release(tensor.range)
            }
            digests[i] = digest.hex
        }
        let digest = ContentDigest()
        let shape = "\(snapshot.layerCount) \(snapshot.kvHeads) \(snapshot.headDim) \(snapshot.vHeadDim)"
        let spans = SnapshotMetadata.encode(snapshot.metadata.spans.filter { $0.end <= end })
        let head = "kvstore-prefix-source-v2 r\(ReductionSpec.revision)\n\(policy)\n\(snapshot.metadata.model)\n\(snapshot.dtype.rawValue) \(end) \(shape)\n\(spans)\n"
        Array(head.utf8).withUnsafeBytes { digest.update($0) }
        (snapshot.tokenIDs() ?? []).prefix(end).map(\.littleEndian).withUnsafeBytes { digest.update($0) }
        for d in digests { Array(d.utf8).withUnsafeBytes { digest.update($0) } }
        return digest.hex
    }
}
