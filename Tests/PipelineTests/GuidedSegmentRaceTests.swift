import Foundation
import LightKV
import Pipeline
import Store
import XCTest

/// Local blobs that lose one named blob when the next new file is started: to an ingest
/// that has just chosen that blob as its guided segment, this is what a compaction collecting
/// it between the lookup and the insert looks like (docs/design/segments.md, "A guided prefix").
private final class CollectingBlobStore: LocalBlobsWithHooks, @unchecked Sendable {
    private let lock = NSLock()
    private var doomed: String?
    private var skip = 0
    /// Files started and blobs deleted through this store, in order.
    private(set) var started = 0
    private(set) var deleted: [String] = []

    /// Deletes `name` when the new file after the next `skipping` ones is started.
    func collectAtNextWrite(_ name: String, skipping: Int = 0) { lock.lock(); (doomed, skip) = (name, skipping); lock.unlock() }

    override func newTempFile() throws -> AtomicFile {
        lock.lock()
        var name: String?
        if skip > 0 { skip -= 1 } else { (name, doomed) = (doomed, nil) }
        started += 1
        lock.unlock()
        if let name { try local.delete(name) }
        return try local.newTempFile()
    }
    override func delete(_ name: String) throws {
        lock.lock(); deleted.append(name); lock.unlock()
        try local.delete(name)
    }
}

final class GuidedSegmentRaceTests: XCTestCase {
    /// A store in a new directory whose blobs can lose one on cue, and the guided policy.
    private func store() throws -> (String, CollectingBlobStore, StoreRoot, Policy) {
        let directory = NSTemporaryDirectory() + "kvstore-race-" + UUID().uuidString
        let blobs = CollectingBlobStore(try LocalBlobStore(root: directory))
        let root = StoreRoot(index: try EntryIndex(path: directory + "/index.sqlite"), blobs: blobs, path: directory)
        return (directory, blobs, root, try Policy(parsing: "aircache50:dense=0"))
    }

    /// The guided segment a later question chose is collected before its row goes in: the
    /// insert fails, the part it wrote is collected again, and the question is stored as a
    /// first question, with a segment of its own that reads back.
    func testALaterQuestionWhoseGuidedSegmentIsCollectedMeanwhileStoresItsOwn() throws {
        let (directory, blobs, root, policy) = try store()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try Ingestor(root: root).ingest(path: try StoreFixture.question(directory, 1), policy: policy).record
        let segment = try XCTUnwrap(first.segment)

        // Undisturbed, a later question names the first's segment.
        let named = try Ingestor(root: root).ingest(path: try StoreFixture.question(directory, 2), policy: policy).record
        XCTAssertEqual(named.segment, segment)

        blobs.collectAtNextWrite(segment)
        let startedBefore = blobs.started
        let later = try Ingestor(root: root).ingest(path: try StoreFixture.question(directory, 3), policy: policy).record
        // The part naming the found segment, then (once that segment was found gone) a segment
        // and a part of its own: three files started, the first part deleted again.
        XCTAssertEqual(blobs.started - startedBefore, 3)
        XCTAssertEqual(blobs.deleted.count, 1)
        let own = try XCTUnwrap(later.segment)
        XCTAssertNotEqual(own, segment)
        XCTAssertNil(try blobs.attributes(segment), "collected")
        XCTAssertEqual(Set(try blobs.names()), Set([first.blob, named.blob, own, later.blob]),
                       "the part written for the collected segment is gone again")
        XCTAssertFalse([first.blob, named.blob, own, later.blob].contains(blobs.deleted[0]))
        let part = try PackReader(path: try blobs.readablePath(later.blob))
        XCTAssertEqual(part.header.segment?.name, own)
        try part.checkContent(named: later.blob)
        try PackReader(path: try blobs.readablePath(own)).checkContent(named: own)
        XCTAssertEqual(try root.index.entry(id: later.id)?.segment, own)
    }

    /// The same race on a row whose blob is gone (an index restored from before an `rm`): the
    /// swap onto the new blob fails as the insert does, the part is collected again, and the
    /// question is stored as a first question, leaving no blob that no row names.
    func testARowWhoseBlobIsGoneStoresItsOwnSegmentWhenTheGuidedOneIsCollectedMeanwhile() throws {
        let (directory, blobs, root, policy) = try store()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try Ingestor(root: root).ingest(path: try StoreFixture.question(directory, 1), policy: policy).record
        let segment = try XCTUnwrap(first.segment)
        let second = try StoreFixture.question(directory, 2)
        let lost = try Ingestor(root: root).ingest(path: second, policy: policy).record
        XCTAssertEqual(lost.segment, segment)
        try blobs.local.delete(lost.blob)  // the row stays, naming a blob that is gone

        blobs.collectAtNextWrite(segment)
        let again = try Ingestor(root: root).ingest(path: second, policy: policy).record
        XCTAssertEqual(again.id, lost.id)
        let own = try XCTUnwrap(again.segment)
        XCTAssertNotEqual(own, segment)
        XCTAssertEqual(try root.index.entry(id: lost.id)?.blob, again.blob)
        XCTAssertEqual(Set(try blobs.names()), Set([first.blob, own, again.blob]),
                       "no part naming the collected segment is left behind")
        try PackReader(path: try blobs.readablePath(again.blob)).checkContent(named: again.blob)
    }

    /// A question under a policy that reads no prompt publishes the shared segment again (the
    /// same bytes under the same name), and an `rm` of the last entry naming it, tombstoning it
    /// just after, collects it before this question's row goes in: the ingest publishes it
    /// once more and stores the question, rather than failing (the daemon sent such an input
    /// to failed/ as damaged).
    func testAQuestionWhoseOwnRepublishedSegmentIsCollectedMeanwhileIsStoredAnyway() throws {
        let (directory, blobs, root, _) = try store()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let policy = try Policy(parsing: "int8")
        let first = try Ingestor(root: root).ingest(path: try StoreFixture.question(directory, 1), policy: policy).record
        let segment = try XCTUnwrap(first.segment)

        blobs.collectAtNextWrite(segment, skipping: 1)  // after its segment is published, as its part starts
        let startedBefore = blobs.started
        let later = try Ingestor(root: root).ingest(path: try StoreFixture.question(directory, 2), policy: policy).record
        // Segment and part, the part collected again once the segment was found gone, then
        // segment and part once more.
        XCTAssertEqual(blobs.started - startedBefore, 4)
        XCTAssertEqual(later.segment, segment, "the same prefix: the same segment, published again")
        XCTAssertEqual(Set(try blobs.names()), Set([first.blob, segment, later.blob]),
                       "the part written for the collected segment is gone again")
        try PackReader(path: try blobs.readablePath(later.blob)).checkContent(named: later.blob)
        try PackReader(path: try blobs.readablePath(segment)).checkContent(named: segment)
        XCTAssertEqual(try root.index.entry(id: later.id)?.blob, later.blob)
    }
}
