import Foundation
import Store

/// Local blobs behind a class whose methods a test overrides to inject a race (a blob
/// collected, a cached copy evicted, an input written) at one exact step; everything else
/// goes to the `LocalBlobStore`.
class LocalBlobsWithHooks: BlobStore, @unchecked Sendable {
    let local: LocalBlobStore

    init(_ local: LocalBlobStore) { self.local = local }

    var isShared: Bool { false }
    var tempDirectory: String { local.tempDirectory }
    func newTempFile() throws -> AtomicFile { try local.newTempFile() }
    func publish(_ temp: AtomicFile, as name: String) throws -> String { try local.publish(temp, as: name) }
    func readablePath(_ name: String) throws -> String { try local.readablePath(name) }
    func location(_ name: String) -> String { local.location(name) }
    func storeMarker() throws -> String? { try local.storeMarker() }
    func writeStoreMarker(_ id: String) throws { try local.writeStoreMarker(id) }
    var place: String { local.place }
    func attributes(_ name: String) throws -> BlobAttributes? { try local.attributes(name) }
    func names() throws -> [String] { try local.names() }
    func delete(_ name: String) throws { try local.delete(name) }
    func abortStaleUploads(minimumAge: Double, dryRun: Bool) throws -> Int { try local.abortStaleUploads(minimumAge: minimumAge, dryRun: dryRun) }
    func strays() throws -> [BlobStray] { try local.strays() }
    func reshelve(_ stray: BlobStray) throws -> Bool { try local.reshelve(stray) }
    func dropLocalCopy(_ name: String) {}
}
