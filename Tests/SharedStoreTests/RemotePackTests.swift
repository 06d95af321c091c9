import Foundation
import XCTest
import Store
@testable import LightKV
@testable import SharedStore

/// One layer read by ranged GETs from a live S3 server (SeaweedFS) is the layer the whole
/// blob holds, and damage to the section, header or footer read is refused.
final class RemotePackTests: XCTestCase {
    /// One server for the class; each test works under a prefix of its own.
    private static var server: SeaweedFS?
    private var store: S3BlobStore!
    private var scratch: String!

    override func setUpWithError() throws {
        if Self.server == nil { Self.server = try SeaweedFS(bucket: "kvranges") }
        scratch = NSTemporaryDirectory() + "kvstore-ranges-" + UUID().uuidString
        store = S3BlobStore(client: try Self.server!.client("s3://kvranges/t\(UUID().uuidString.lowercased())"),
                            cache: try BlobCache(directory: scratch + "/cache", capacity: 1 << 30))
    }

    override func tearDownWithError() throws {
        if let scratch { try? FileManager.default.removeItem(atPath: scratch) }
    }

    override class func tearDown() {
        server?.stop()
        server = nil
    }

    private static let heads = 2, dim = 8, seqLen = 128

    /// A pack of `layers` zstd sections of pseudo-random F16 keys and values, with
    /// `metadataBytes` of metadata in its header; returns its temp file and content name.
    private func pack(layers: Int, metadataBytes: Int = 0) throws -> (temp: AtomicFile, name: String) {
        let temp = try store.newTempFile()
        let writer = try PackWriter(file: temp)
        var state: UInt64 = 0x9e37_79b9_7f4a_7c15
        func block(_ count: Int) -> EncodedBlock {
            let bytes = (0..<(Self.heads * count * Self.dim * 2)).map { _ -> UInt8 in
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                return UInt8(truncatingIfNeeded: state >> 59)  // few distinct bytes: zstd has work to do
            }
            return EncodedBlock(encoding: .raw(.f16), bytes: bytes)
        }
        for layer in 0..<layers {
            let count = 20 + 7 * layer
            let positions = (0..<count).map { Int32($0 * 2) }
            let packed = PackedLayer(positions: positions, sizes: positions.map { _ in 2 }, keys: block(count), values: block(count))
            try writer.append(PackWriter.seal(packed, codec: .zstd(level: 3)))
        }
        let (_, name) = try writer.finish(
            metadata: ["note": String(repeating: "m", count: metadataBytes)], seqLen: Self.seqLen, kvHeads: Self.heads,
            headDim: Self.dim, vHeadDim: Self.dim, inputDType: .f16, compression: ["policy": "none"])
        return (temp, name)
    }

    private func keys(_ section: PackReader.Section) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.heads * section.descriptor.count * Self.dim * 2)
        try out.withUnsafeMutableBytes {
            try section.decode(values: false, heads: Self.heads, dim: Self.dim, to: .f16, into: $0.baseAddress!, path: "test")
        }
        return out
    }

    private func json(_ header: PackHeader) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(header)
    }

    func testALayerReadByRangesIsTheLayerOfTheWholeBlob() throws {
        // A header inside the first GET's 64 KiB, and one beyond it (read by a second GET).
        for metadataBytes in [0, 100_000] {
            let (temp, name) = try pack(layers: 4, metadataBytes: metadataBytes)
            let local = try PackReader(path: try store.publish(temp, as: name))
            store.cache.remove(name)
            let remote = try store.remotePack(name)
            XCTAssertEqual(remote.size, local.size)
            XCTAssertEqual(try json(remote.header), try json(local.header))
            for i in 0..<4 {
                let (mine, theirs) = (try remote.section(i), try local.section(i))
                XCTAssertEqual(mine.raw, theirs.raw, "layer \(i)")
                XCTAssertEqual(mine.positions, theirs.positions)
                XCTAssertEqual(mine.sizes, theirs.sizes)
                XCTAssertEqual(try keys(mine), try keys(theirs))
            }
            XCTAssertNil(store.cache.verifiedCopy(name), "ranged reads leave the cache alone")
        }
    }

    func testADamagedSectionHeaderOrFooterIsRefused() throws {
        let (temp, name) = try pack(layers: 3)
        let whole = try Data(contentsOf: URL(fileURLWithPath: try store.publish(temp, as: name)))
        let layer1 = try PackReader(path: store.cache.path(name)).header.layers[1]
        let footer = whole.count - PackHeader.footerLength

        /// Uploads `bytes` under their own content name, as a damaged copy would be found.
        func upload(_ bytes: Data) throws -> (name: String, url: String) {
            let path = scratch + "/damaged"
            try bytes.write(to: URL(fileURLWithPath: path))
            let digest = ContentDigest()
            bytes.withUnsafeBytes { digest.update($0) }
            try store.client.put(store.key(digest.hex), file: path)
            return (digest.hex, store.location(digest.hex))
        }
        func refused(_ body: () throws -> Void, path: String, saying problem: String, line: UInt = #line) {
            XCTAssertThrowsError(try body(), line: line) { error in
                guard case StoreError.corrupt(let where_, let what) = error else { return XCTFail("\(error)", line: line) }
                XCTAssertEqual(where_, path, line: line)
                XCTAssertTrue(what.contains(problem), what, line: line)
            }
        }

        var section = whole
        section[layer1.offset + layer1.storedLength / 2] ^= 0x10
        let damaged = try upload(section)
        let remote = try store.remotePack(damaged.name)
        XCTAssertNoThrow(try remote.section(0), "the other layers read")
        XCTAssertNoThrow(try remote.section(2))
        refused({ _ = try remote.section(1) }, path: damaged.url, saying: "layer 1: section checksum mismatch")

        var header = whole
        header[footer - 5] ^= 0x01
        let badHeader = try upload(header)
        refused({ _ = try store.remotePack(badHeader.name) }, path: badHeader.url, saying: "header checksum mismatch")

        let truncated = try upload(whole.prefix(whole.count - 10))
        refused({ _ = try store.remotePack(truncated.name) }, path: truncated.url, saying: "bad footer magic")

        XCTAssertThrowsError(try store.remotePack(name).section(3)) { error in
            XCTAssertTrue("\(error)".contains("the pack has 3 layers"), "\(error)")
        }
        XCTAssertThrowsError(try store.remotePack(String(repeating: "0", count: 32))) { error in
            guard case StoreError.io(_, _, ENOENT) = error else { return XCTFail("a missing blob is not found: \(error)") }
        }
    }
}
