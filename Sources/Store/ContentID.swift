import Foundation
import LightKV

/// The id of a snapshot: SHA-256 over its canonical form, hex.
///
/// Canonical means independent of how the producer laid out the file: the metadata as JSON
/// with sorted keys, then each tensor in name order as `name dtype shape` and the SHA-256 of
/// its bytes. Hashing tensors separately lets them be hashed on several threads.
public enum ContentID {
    public static func of(_ snapshot: Snapshot) -> String {
        var tensors: [TensorInfo] = []
        for l in snapshot.layers {
            tensors += [l.key, l.value, l.promptQuery, l.probeQuery, l.positions, l.sizes].compactMap { $0 }
        }
        tensors.sort { $0.name < $1.name }
        let digests = UnsafeMutableBufferPointer<[UInt8]>.allocate(capacity: tensors.count)
        digests.initialize(repeating: [])
        defer { digests.deallocate() }
        DispatchQueue.concurrentPerform(iterations: tensors.count) { i in
            digests[i] = SHA256Hasher.digest(snapshot.data(tensors[i]))
        }
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
