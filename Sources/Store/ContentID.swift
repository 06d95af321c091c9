import Foundation
import LightKV

/// The id of a snapshot: SHA-256 over its canonical form, hex.
///
/// Canonical means independent of how the producer laid out the file: the metadata as JSON
/// with sorted keys, then each tensor in name order as `name dtype shape` and the SHA-256 of
/// its bytes. Hashing tensors separately lets them be hashed on several threads.
public enum ContentID {
    public static func of(_ snapshot: Snapshot) -> String {
        try! of(snapshot, checkingFinite: false, release: { _ in })
    }

    /// The id, in one pass that also checks every float is finite (the pages are hot for
    /// both), shows each tensor's bytes to `visit` (another digest that wants them while they
    /// are at hand: `PrefixSource.Rows`), and then hands its byte range to `release`, so a
    /// caller streaming from a memory map can drop pages it has read (see `MappedFile.release`).
    public static func of(
        _ snapshot: Snapshot, checkingFinite: Bool,
        visit: @Sendable (TensorInfo, UnsafeRawBufferPointer) -> Void = { _, _ in },
        release: @Sendable (Range<Int>) -> Void
    ) throws -> String {
        var tensors: [TensorInfo] = []
        for l in snapshot.layers {
            tensors += [l.key, l.value, l.promptQuery, l.probeQuery, l.positions, l.sizes].compactMap { $0 }
        }
        if let ids = snapshot.inputIDs { tensors.append(ids) }
        tensors.sort { $0.name < $1.name }
        let digests = UnsafeMutableBufferPointer<[UInt8]>.allocate(capacity: tensors.count)
        digests.initialize(repeating: [])
        defer { digests.deallocate() }
        let bad = UnsafeMutableBufferPointer<Bool>.allocate(capacity: tensors.count)
        bad.initialize(repeating: false)
        defer { bad.deallocate() }
        let list = tensors
        DispatchQueue.concurrentPerform(iterations: list.count) { i in
            let t = list[i], data = snapshot.data(t)
            if checkingFinite && t.dtype.isFloat && !Conversion.allFinite(data, dtype: t.dtype) { bad[i] = true }
            digests[i] = SHA256Hasher.digest(data)
            visit(t, data)
            release(t.range)
        }
        if let i = bad.firstIndex(of: true) { throw KVSnapError.nonFinite(tensor: list[i].name) }
        var h = SHA256Hasher()
        h.update("kvsnap-id-v1\n")
        h.update(SafetensorsLayout.canonicalJSON(snapshot.metadata.raw) + "\n")
        for (i, t) in tensors.enumerated() {
            h.update("\(t.name) \(t.dtype.rawValue) \(t.shape)\n")
            digests[i].withUnsafeBytes { h.update($0) }
        }
        return h.finish().hexString
    }
}
