import Foundation
import Store

/// Blobs in an S3 bucket under a prefix, `PREFIX/blobs/ab/<name>.kvpack`, read through the
/// node's `BlobCache` (docs/DESIGN.md, "Shared stores").
///
/// A pack is written to the cache's tmp/, PUT with its SHA-256 signed (in parts above the
/// client's `multipartThreshold`), confirmed by a HEAD of the same size, and only then kept
/// as the cache's copy: a row may name it once `publish` returns. Readers get the cache's
/// verified copy, downloaded on a miss, or read one layer by ranges (`remotePack`).
public struct S3BlobStore: BlobStore {
    public let client: S3Client
    public let cache: BlobCache

    public init(client: S3Client, cache: BlobCache) {
        self.client = client; self.cache = cache
    }

    public var tempDirectory: String { cache.tempDirectory }

    public var isShared: Bool { true }

    public func newTempFile() throws -> AtomicFile {
        let name = "\(tempDirectory)/\(UUID().uuidString.lowercased()).kvpack.tmp"
        return try AtomicFile(finalPath: name, tempPath: name)
    }

    public func publish(_ temp: AtomicFile, as name: String) throws -> String {
        let key = key(name)
        try client.put(key, file: temp.tempPath)
        let local = FileSystem.size(temp.tempPath)
        guard let stored = try client.head(key), stored.bytes == local else {
            throw StoreError.io(path: location(name), operation: "confirm the upload (HEAD does not show \(local ?? 0) bytes)", errno: EAGAIN)
        }
        return try cache.adopt(temp, as: name)
    }

    public func readablePath(_ name: String) throws -> String {
        if let copy = cache.verifiedCopy(name) { return copy }
        return try cache.fill(name, source: location(name)) { try client.get(key(name), to: $0) }
    }

    public func location(_ name: String) -> String { client.location.url(ofKey: key(name)) }

    public func attributes(_ name: String) throws -> BlobAttributes? { try client.head(key(name)) }

    public func names() throws -> [String] { try listing().map(\.name) }

    public func inventory() throws -> [String: BlobAttributes] {
        Dictionary(try listing().map { ($0.name, BlobAttributes(bytes: $0.object.bytes, modified: $0.object.modified, age: $0.object.age, resolution: 1)) }) { a, _ in a }
    }

    /// The pack objects under `PREFIX/blobs/`, with their blob names.
    private func listing() throws -> [(name: String, object: S3Listing.Object)] {
        try client.list(prefix: client.location.key("blobs/")).compactMap { object in
            guard object.key.hasSuffix(".kvpack") else { return nil }
            return (String(object.key.split(separator: "/").last!.dropLast(7)), object)
        }
    }

    public func delete(_ name: String) throws {
        try client.delete(key(name))
        cache.remove(name)
    }

    public func dropLocalCopy(_ name: String) { cache.remove(name) }

    /// The bucket and prefix, not the endpoint: nodes reach one server by different names
    /// (per-zone endpoints, addresses of their own).
    public var place: String { client.location.url(ofKey: client.location.key("")) }

    /// `PREFIX/store-id`: the id of the store whose index these objects belong to.
    public func storeMarker() throws -> String? {
        let temp = markerTemp
        defer { try? FileSystem.remove(temp) }
        do { try client.get(markerKey, to: temp) } catch StoreError.io(_, _, ENOENT) { return nil }
        guard let text = try? String(contentsOfFile: temp, encoding: .utf8) else {
            throw StoreError.io(path: client.location.url(ofKey: markerKey), operation: "read the store marker", errno: EIO)
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func writeStoreMarker(_ id: String) throws {
        let temp = markerTemp
        defer { try? FileSystem.remove(temp) }
        try Data((id + "\n").utf8).write(to: URL(fileURLWithPath: temp))
        try client.put(markerKey, file: temp)
    }

    private var markerKey: String { client.location.key("store-id") }
    private var markerTemp: String { "\(tempDirectory)/store-id.\(UUID().uuidString.lowercased()).tmp" }

    /// Blob `name` opened for ranged reads of single layers, without downloading it.
    public func remotePack(_ name: String) throws -> RemotePack { try RemotePack(client: client, key: key(name)) }

    /// Aborts the multipart uploads under `PREFIX/blobs/` started more than `minimumAge`
    /// seconds ago by the server's clock: what an ingest that died mid-upload left. A live
    /// upload that old fails with exit 4 and is retried. Returns how many were (with
    /// `dryRun`, would be) aborted; one completed or aborted meanwhile is not counted.
    public func abortStaleUploads(minimumAge: Double, dryRun: Bool) throws -> Int {
        let (uploads, serverTime) = try client.listMultipartUploads(prefix: client.location.key("blobs/"))
        let now = serverTime ?? Date().timeIntervalSince1970  // later pages only make uploads look younger
        var aborted = 0
        for upload in uploads where now - upload.initiated >= minimumAge {
            if !dryRun {
                do { try client.abortMultipartUpload(upload.key, uploadID: upload.uploadID) } catch StoreError.io(_, _, ENOENT) { continue }
            }
            aborted += 1
        }
        return aborted
    }

    func key(_ name: String) -> String { client.location.key("blobs/\(name.prefix(2))/\(name).kvpack") }
}
