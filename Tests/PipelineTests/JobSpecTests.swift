import XCTest
import Store
@testable import Pipeline
import Store

/// Job specs: the TOML subset, and errors that name the line and the key.
final class JobSpecTests: XCTestCase {
    func testParsesTheShippedSpecs() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        guard case .ingest(let ingest) = try JobSpec.load(path: root + "/jobs/ingest.toml") else { return XCTFail("not an ingest job") }
        XCTAssertEqual(ingest.layout.inbox, "/var/spool/kvstore/inbox")
        XCTAssertEqual(ingest.layout.done, "/var/spool/kvstore/done")
        XCTAssertEqual(ingest.settings.jobs, 2)
        XCTAssertEqual(ingest.settings.policy.name, "none+zstd3")
        guard case .compact(let compact) = try JobSpec.load(path: root + "/jobs/compact.toml") else { return XCTFail("not a compact job") }
        XCTAssertEqual(compact.settings.budget, 50_000_000_000)
        XCTAssertEqual(compact.settings.coldDays, 30)
        XCTAssertEqual(compact.settings.coldPolicy?.name, "none+zstd19")
        XCTAssertEqual(compact.store?.store.value, "/var/lib/kvstore")
    }

    func testTOMLSubsetValuesCommentsAndTables() throws {
        let toml = try TOMLSubset(parsing: """
            # comment
            a = "x # not a comment" # a comment
            b = 'C:\\raw'
            c = 1_000
            d = -2.5e1
            e = true
            [t.u]
            f = "tab\\there \\"q\\""
            """, file: "s.toml")
        XCTAssertEqual(toml.tables[""]?["a"]?.value, .string("x # not a comment"))
        XCTAssertEqual(toml.tables[""]?["b"]?.value, .string("C:\\raw"))
        XCTAssertEqual(toml.tables[""]?["c"]?.value, .integer(1000))
        XCTAssertEqual(toml.tables[""]?["d"]?.value, .float(-25))
        XCTAssertEqual(toml.tables[""]?["e"]?.value, .bool(true))
        XCTAssertEqual(toml.tables["t.u"]?["f"]?.value, .string("tab\there \"q\""))
        XCTAssertEqual(toml.tables["t.u"]?["f"]?.line, 8)
    }

    func testErrorsNameTheLineAndTheKey() {
        let cases: [(String, JobSpecError)] = [
            ("kind = \"ingest\"\n[ingest]\ninbox = \"/i\"\njbos = 2\n",
             .unknownKey(file: "j.toml", line: 4, key: "ingest.jbos", known: JobSpec.ingestKeys.map { "ingest." + $0 })),
            ("kind = \"ingest\"\n[ingest]\ninbox = \"/i\"\njobs = \"2\"\n",
             .badValue(file: "j.toml", line: 4, key: "ingest.jobs", problem: "expected an integer, got a string")),
            ("kind = \"ingest\"\n[ingest]\ninbox = \"/i\"\njobs = 0\n",
             .badValue(file: "j.toml", line: 4, key: "ingest.jobs", problem: "0 is below 1")),
            ("kind = \"ingest\"\n[ingest]\npolicy = \"none\"\n", .missing(file: "j.toml", key: "ingest.inbox")),
            ("kind = \"compact\"\n[compact]\nbudget = 50GB\n",
             .syntax(file: "j.toml", line: 3, problem: "compact.budget: \"50GB\" is not a string, number or boolean (strings need quotes)")),
            ("kind = \"compact\"\n[compact]\ncold_days = 3\n",
             .badValue(file: "j.toml", line: 3, key: "compact.cold_days", problem: "cold_days and cold_policy go together")),
            ("kind = \"rebuild\"\n", .badValue(file: "j.toml", line: 1, key: "kind", problem: "\"rebuild\" is not \"ingest\" or \"compact\"")),
            ("kind = \"compact\"\nkind = \"ingest\"\n", .duplicate(file: "j.toml", line: 2, key: "kind")),
            ("kind = \"compact\"\n[compact]\nbudget = [1, 2]\n",
             .syntax(file: "j.toml", line: 3, problem: "compact.budget: arrays and inline tables are not supported")),
            ("kind = \"compact\n", .syntax(file: "j.toml", line: 1, problem: "unterminated string")),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try JobSpec.parse(text, file: "j.toml"), text) { error in
                XCTAssertEqual(error as? JobSpecError, expected, text)
            }
        }
    }

    func testABadPolicyIsNamedWithItsKey() {
        XCTAssertThrowsError(try JobSpec.parse("kind = \"compact\"\n[compact]\ncold_days = 1\ncold_policy = \"zstd99\"\n", file: "c.toml")) { error in
            XCTAssertTrue("\(error)".hasPrefix("c.toml:4: compact.cold_policy: policy \"zstd99\""), "\(error)")
        }
    }

    func testRelativePathsAreRelativeToTheSpec() throws {
        guard case .ingest(let job) = try JobSpec.parse("kind = \"ingest\"\nstore = \"s\"\n[ingest]\ninbox = \"in\"\ninputs = \"delete\"\n", file: "/etc/kvstore/i.toml") else {
            return XCTFail()
        }
        XCTAssertEqual(job.store?.store.value, "/etc/kvstore/s")
        XCTAssertEqual(job.layout.inbox, "/etc/kvstore/in")
        XCTAssertNil(job.layout.done)
    }

    func testAJobNamesASharedStoreByItsPartsOrByAStoreConfig() throws {
        guard case .compact(let job) = try JobSpec.parse("""
            kind = "compact"
            store = "s3://kv-fleet/prod"
            index = "postgresql://kvstore@db/kvstore"
            cache = "cache"
            cache_size = "20GB"
            """, file: "/etc/kvstore/c.toml") else { return XCTFail() }
        XCTAssertEqual(job.store?.store, StoreSettings.Setting(value: "s3://kv-fleet/prod", line: 2, key: "store"))
        XCTAssertEqual(job.store?.index?.value, "postgresql://kvstore@db/kvstore")
        XCTAssertEqual(job.store?.cacheDirectory?.value, "/etc/kvstore/cache")
        XCTAssertEqual(job.store?.cacheSize, StoreSettings.Setting(value: "20GB", line: 5, key: "cache_size"))

        let directory = NSTemporaryDirectory() + "kvstore-job-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "[blobs]\nurl = \"blobs\"\n[index]\nurl = \"index\"\n".write(toFile: directory + "/store.toml", atomically: true, encoding: .utf8)
        guard case .ingest(let ingest) = try JobSpec.parse("kind = \"ingest\"\nstore_config = \"store.toml\"\n[ingest]\ninbox = \"in\"\n",
                                                          file: directory + "/i.toml") else { return XCTFail() }
        XCTAssertEqual(ingest.store?.file, directory + "/store.toml")
        XCTAssertEqual(ingest.store?.store, StoreSettings.Setting(value: directory + "/blobs", line: 2, key: "blobs.url"))
        XCTAssertEqual(ingest.store?.index?.value, directory + "/index")
        guard case .compact(let plain) = try JobSpec.parse("kind = \"compact\"\n", file: "c.toml") else { return XCTFail() }
        XCTAssertNil(plain.store, "no store named: the environment's")
    }

    func testStoreConfigExcludesTheOtherStoreKeys() {
        let cases: [(String, JobSpecError)] = [
            ("kind = \"compact\"\nstore_config = \"s.toml\"\nindex = \"/i\"\n",
             .badValue(file: "j.toml", line: 3, key: "index", problem: "set, but store_config names the store: give one or the other")),
            ("kind = \"compact\"\ncache = \"/c\"\n", .badValue(file: "j.toml", line: 2, key: "cache", problem: "set without store")),
            ("kind = \"compact\"\nstore = 3\n", .badValue(file: "j.toml", line: 2, key: "store", problem: "expected a string, got an integer")),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try JobSpec.parse(text, file: "j.toml"), text) { error in
                XCTAssertEqual(error as? JobSpecError, expected, text)
            }
        }
        XCTAssertThrowsError(try JobSpec.parse("kind = \"compact\"\nstore_config = \"/nonexistent/s.toml\"\n", file: "j.toml")) { error in
            XCTAssertTrue("\(error)".hasPrefix("/nonexistent/s.toml: cannot read"), "\(error)")
        }
    }

    func testByteSizes() {
        XCTAssertEqual(ByteSize(parsing: "50GB")?.bytes, 50_000_000_000)
        XCTAssertEqual(ByteSize(parsing: "1.5 GiB")?.bytes, 1_610_612_736)
        XCTAssertEqual(ByteSize(parsing: "123")?.bytes, 123)
        XCTAssertEqual(ByteSize(parsing: "500mb")?.bytes, 500_000_000)
        XCTAssertNil(ByteSize(parsing: "5 parsecs"))
        XCTAssertNil(ByteSize(parsing: "-1GB"))
        XCTAssertNil(ByteSize(parsing: ""))
    }

    func testBackoffDoublesUpToItsLimit() {
        XCTAssertEqual((1...8).map { InboxDaemon.backoffDelay(attempts: $0, max: 60) }, [1, 2, 4, 8, 16, 32, 60, 60])
    }

    func testInboxIgnoresDotfilesAndPartialNames() {
        XCTAssertTrue(InboxLayout.isCandidate("a.safetensors"))
        for name in [".a.safetensors", "a.safetensors.tmp", "a.part", ".work", ""] {
            XCTAssertFalse(InboxLayout.isCandidate(name), name)
        }
    }
}
