import LightKV

/// Names a shareable prefix (KVSNAP.md, "The shareable prefix") by what makes its keys and
/// values what they are: the model and the token ids before the first prompt span. Two
/// requests whose ids agree there hold the same prefix, whatever they ask next, so a serving
/// node finds a stored one by hashing the start of its own ids (`kvstore match`).
///
/// SHA-256 of `"kvstore-prefix-v1\n" + model + "\n"` followed by each id as a little-endian
/// Int64 (ids of either dtype hash alike). Media sources are checked beside it, span by span
/// (`EntryIndex.longestPrefix`), not hashed in: a request that does not know them still matches
/// by ids, and the answer says which evidence it rests on.
public enum PrefixDigest {
    public static func of(model: String, ids: ArraySlice<Int64>) -> String {
        var h = SHA256Hasher()
        h.update("kvstore-prefix-v1\n" + model + "\n")
        ids.map(\.littleEndian).withUnsafeBytes { h.update($0) }
        return h.finish().hexString
    }

    /// The prefix length and digest of a snapshot's ids, nil without ids.
    public static func of(model: String, ids: [Int64]?, metadata: SnapshotMetadata, seqLen: Int) -> (length: Int, digest: String)? {
        guard let ids else { return nil }
        let end = metadata.prefixEnd(seqLen: seqLen)
        return (end, of(model: model, ids: ids[0..<end]))
    }
}
