import LightKV

/// Names a shareable prefix (KVSNAP.md, "The shareable prefix") by what makes its keys and
/// values what they are: the model and the token ids before the first prompt span. Two
/// requests whose ids agree there hold the same prefix, whatever they ask next, so a serving
/// node finds a stored one by hashing the start of its own ids (`kvstore match`).
///
/// SHA-256 of `"kvstore-prefix-v1\n" + model + "\n"` followed by each id as a little-endian
/// Int64 (ids of either dtype hash alike). Media sources are checked beside it, span by span
/// (`EntryIndex.longestPrefix`), not hashed in; a match needs every one of them.
public enum PrefixDigest {
    public static func of(model: String, ids: ArraySlice<Int64>) -> String {
        var h = hasher(model: model)
        ids.map(\.littleEndian).withUnsafeBytes { h.update($0) }
        return h.finish().hexString
    }

    /// The digest of each prefix `ids[0..<length]` of `lengths`, in one pass over the ids (a
    /// request of a million ids against many stored lengths is hashed once, not per length).
    public static func of(model: String, ids: [Int64], lengths: [Int]) -> [Int: String] {
        var h = hasher(model: model), done = 0, digests: [Int: String] = [:]
        for length in Set(lengths).sorted() where length <= ids.count {
            ids[done..<length].map(\.littleEndian).withUnsafeBytes { h.update($0) }
            done = length
            var copy = h  // the state so far; hashing goes on from it
            digests[length] = copy.finish().hexString
        }
        return digests
    }

    private static func hasher(model: String) -> SHA256Hasher {
        var h = SHA256Hasher()
        h.update("kvstore-prefix-v1\n" + model + "\n")
        return h
    }

    /// The prefix length and digest of a snapshot's ids, nil without ids.
    public static func of(model: String, ids: [Int64]?, metadata: SnapshotMetadata, seqLen: Int) -> (length: Int, digest: String)? {
        guard let ids else { return nil }
        let end = metadata.prefixEnd(seqLen: seqLen)
        return (end, of(model: model, ids: ids[0..<end]))
    }
}
