import Foundation
import Pipeline
import Store
import XCTest

/// Which failures are the input's (failed/, with a report) and which the store's or the
/// machine's (back to the inbox, tried again): a read-only store once sent every valid input
/// to failed/.
final class DaemonFailureTests: XCTestCase {
    func testStoreSideFailuresAreRetriedAndTheInputsOwnAreNot() {
        let input = "/proc/self/fd/7"
        for code in [EROFS, EACCES, EPERM, EIO, EMFILE, ENFILE, ENOMEM] {
            XCTAssertTrue(InboxDaemon.isTheStores(.io(path: "/srv/store/tmp/x.kvpack.tmp", operation: "create", errno: code), input: [input]), "\(code)")
            XCTAssertFalse(InboxDaemon.isTheStores(.io(path: input, operation: "read", errno: code), input: [input]), "\(code): the input's")
        }
        XCTAssertTrue(InboxDaemon.isTheStores(.database("attempt to write a readonly database"), input: [input]))
        XCTAssertFalse(InboxDaemon.isTheStores(.corrupt(path: input, problem: "truncated"), input: [input]))
        XCTAssertFalse(InboxDaemon.isTheStores(.io(path: "/srv/store/blobs/ab/x.kvpack", operation: "open", errno: ENOENT), input: [input]))
    }

    func testOnlyPoliciesThatNeitherReduceNorQuantizeAreExact() {
        XCTAssertTrue(InboxDaemon.isExact("none"))
        XCTAssertTrue(InboxDaemon.isExact("none+lz4"))
        XCTAssertFalse(InboxDaemon.isExact("int8"))
        XCTAssertFalse(InboxDaemon.isExact("lightkv+int8+zstd3"))
        XCTAssertFalse(InboxDaemon.isExact("not a policy"))
    }
}
