import Foundation
import XCTest
@testable import Pipeline
import Store

/// Claiming inbox files: one winner per file, and a dead daemon's files found again.
final class InboxClaimTests: XCTestCase {
    private func inbox() throws -> InboxLayout {
        let dir = NSTemporaryDirectory() + "kvstore-inbox-" + UUID().uuidString
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let layout = InboxLayout(inbox: dir, done: InboxLayout.defaultDone(dir))
        try layout.create()
        return layout
    }

    func testOnlyOneOfTwoDaemonsClaimsAFile() throws {
        let layout = try inbox()
        FileManager.default.createFile(atPath: layout.inbox + "/a.safetensors", contents: Data([1, 2, 3]))
        let first = try InboxClaim(layout: layout), second = try InboxClaim(layout: layout)
        let won = try first.claim("a.safetensors")
        XCTAssertEqual(won, first.folder + "/a.safetensors")
        XCTAssertNil(try second.claim("a.safetensors"), "the file is gone from the inbox")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: won!)), Data([1, 2, 3]))
    }

    func testALiveDaemonsFolderIsNeverAdoptedButADeadOnesIs() throws {
        let layout = try inbox()
        FileManager.default.createFile(atPath: layout.inbox + "/a.safetensors", contents: Data([1]))
        var dying: InboxClaim? = try InboxClaim(layout: layout)
        let claimed = try dying!.claim("a.safetensors")!
        let survivor = try InboxClaim(layout: layout)
        XCTAssertTrue(survivor.adoptAbandoned().isEmpty, "its owner holds the lock")

        dying = nil  // the process "dies": its flock is released
        let adopted = survivor.adoptAbandoned()
        XCTAssertEqual(adopted.map(\.files), [[claimed]])
        XCTAssertTrue(try InboxClaim(layout: layout).adoptAbandoned().isEmpty, "an adopted folder is locked by its adopter")
        try FileSystem.remove(claimed)
        InboxClaim.release(folder: adopted[0].folder, lock: adopted[0].lock)
        XCTAssertFalse(FileSystem.exists(adopted[0].folder))
    }

    func testUnclaimNeverOverwritesANewFileOfTheSameName() throws {
        let layout = try inbox()
        FileManager.default.createFile(atPath: layout.inbox + "/a.safetensors", contents: Data([1]))
        let claim = try InboxClaim(layout: layout)
        let path = try claim.claim("a.safetensors")!
        FileManager.default.createFile(atPath: layout.inbox + "/a.safetensors", contents: Data([2]))
        XCTAssertEqual(try claim.unclaim(path), layout.inbox + "/a.safetensors.1")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: layout.inbox + "/a.safetensors")), Data([2]))
    }
}
