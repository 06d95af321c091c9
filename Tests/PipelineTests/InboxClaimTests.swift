import Foundation
import XCTest
@testable import Pipeline
import Store

/// Claiming inbox files: one winner per file, and a dead daemon's files found again.
final class InboxClaimTests: XCTestCase {
    private func inbox() throws -> InboxFolders {
        let dir = NSTemporaryDirectory() + "kvstore-inbox-" + UUID().uuidString
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return try InboxFolders(layout: InboxLayout(inbox: dir, done: InboxLayout.defaultDone(dir)))
    }

    func testOnlyOneOfTwoDaemonsClaimsAFile() throws {
        let folders = try inbox()
        FileManager.default.createFile(atPath: folders.inbox.path + "/a.safetensors", contents: Data([1, 2, 3]))
        let first = try InboxClaim(folders: folders), second = try InboxClaim(folders: folders)
        XCTAssertEqual(try first.claim("a.safetensors"), "a.safetensors")
        XCTAssertNil(try second.claim("a.safetensors"), "the file is gone from the inbox")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: first.folder.path + "/a.safetensors")), Data([1, 2, 3]))
    }

    func testALiveDaemonsFolderIsNeverAdoptedButADeadOnesIs() throws {
        let folders = try inbox()
        FileManager.default.createFile(atPath: folders.inbox.path + "/a.safetensors", contents: Data([1]))
        var dying: InboxClaim? = try InboxClaim(folders: folders)
        _ = try dying!.claim("a.safetensors")
        let dyingFolder = dying!.folder.path
        let survivor = try InboxClaim(folders: folders)
        XCTAssertTrue(survivor.adoptAbandoned().isEmpty, "its owner holds the lock")

        dying = nil  // the process "dies": its flock is released
        let adopted = survivor.adoptAbandoned()
        XCTAssertEqual(adopted.map(\.folder.path), [dyingFolder])
        XCTAssertEqual(adopted.map(\.files), [["a.safetensors"]])
        XCTAssertTrue(try InboxClaim(folders: folders).adoptAbandoned().isEmpty, "an adopted folder is locked by its adopter")
        try adopted[0].folder.remove("a.safetensors")
        survivor.release(adopted[0])
        XCTAssertFalse(FileSystem.exists(dyingFolder))
    }

    func testUnclaimNeverOverwritesANewFileOfTheSameName() throws {
        let folders = try inbox()
        FileManager.default.createFile(atPath: folders.inbox.path + "/a.safetensors", contents: Data([1]))
        let claim = try InboxClaim(folders: folders)
        let claimed = try claim.claim("a.safetensors")!
        FileManager.default.createFile(atPath: folders.inbox.path + "/a.safetensors", contents: Data([2]))
        XCTAssertEqual(try claim.unclaim(claimed, from: claim.folder), "a.safetensors.1")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: folders.inbox.path + "/a.safetensors")), Data([2]))
    }

    func testASymlinkedFolderInTheInboxIsRefusedNotFollowed() throws {
        let dir = NSTemporaryDirectory() + "kvstore-inbox-" + UUID().uuidString
        let elsewhere = NSTemporaryDirectory() + "kvstore-elsewhere-" + UUID().uuidString
        addTeardownBlock { for d in [dir, elsewhere] { try? FileManager.default.removeItem(atPath: d) } }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
        for folder in ["failed", "done", ".work"] {
            try? FileManager.default.removeItem(atPath: dir + "/failed")
            try? FileManager.default.removeItem(atPath: dir + "/done")
            try? FileManager.default.removeItem(atPath: dir + "/.work")
            XCTAssertEqual(symlink(elsewhere, dir + "/" + folder), 0)
            XCTAssertThrowsError(try InboxFolders(layout: InboxLayout(inbox: dir, done: InboxLayout.defaultDone(dir)))) {
                XCTAssertEqual($0 as? InboxError, .symbolicLink(path: dir + "/" + folder))
            }
            XCTAssertEqual(FileSystem.list(elsewhere), [], "nothing created through the link")
        }
    }

    func testLongNamesAreShortenedToFitWithTheirSuffixes() {
        let long = String(repeating: "é", count: 121) + ".safetensors"  // 254 bytes
        XCTAssertEqual(InboxName.numbered("a.safetensors", 0), "a.safetensors")
        XCTAssertEqual(InboxName.numbered("a.safetensors", 2), "a.safetensors.2")
        XCTAssertEqual(InboxName.numbered(long, 0), long)
        for (n, reserve) in [(1, 0), (12, 0), (0, 11), (3, 11)] {
            let fitted = InboxName.numbered(long, n, reserve: reserve)
            XCTAssertLessThanOrEqual(fitted.utf8.count + reserve, 255, fitted)
            XCTAssertTrue(fitted.hasPrefix(String(repeating: "é", count: 100)), fitted)
            XCTAssertTrue(fitted.hasSuffix(n == 0 ? "~" + InboxName.hash(long) : "~" + InboxName.hash(long) + ".\(n)"), fitted)
        }
        XCTAssertNotEqual(InboxName.numbered(long, 1), InboxName.numbered("x" + long.dropFirst(), 1), "long names sharing a start stay apart")
    }

    func testNamesThatAreNotUTF8AreEscapedReversibly() {
        XCTAssertEqual(InboxName.escaped(Array("plain-é.safetensors".utf8)), "plain-é.safetensors")
        XCTAssertEqual(InboxName.escaped([0x61, 0xFF, 0x62, 0x25]), "a%FFb%25")
        XCTAssertEqual(InboxName.escaped([0xC3, 0x28]), "%C3(")
    }
}
