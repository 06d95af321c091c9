import XCTest
@testable import SharedStore
import Store

/// What the PostgreSQL index does without a server: its URL, its statements' placeholders and
/// splitting, its lock keys, and which store a set of flags names.
final class PostgresIndexTests: XCTestCase {
    func testAnIndexURLGivesEveryPartAndRefusesWhatItCannotUse() throws {
        let full = try PostgresLocation(url: "postgresql://kv%40fleet:s3cret@db.example:6543/kv_index?sslmode=require", environment: [:])
        XCTAssertEqual([full.user, full.password, full.host, full.database], ["kv@fleet", "s3cret", "db.example", "kv_index"])
        XCTAssertEqual(full.port, 6543)
        XCTAssertTrue(full.requireTLS)
        XCTAssertEqual(full.redacted, "postgresql://kv@fleet@db.example:6543/kv_index", "no password in messages")
        let fromEnvironment = try PostgresLocation(url: "postgres://kv@db/kv", environment: ["PGPASSWORD": "p"])
        XCTAssertEqual(fromEnvironment.password, "p")
        XCTAssertEqual(fromEnvironment.port, 5432)
        XCTAssertFalse(fromEnvironment.requireTLS)

        for (url, problem) in [("postgresql://db/kv", "no user"), ("postgresql://kv@db", "no database"),
                               ("postgresql://kv@db/kv?sslmode=allow", "sslmode=allow"), ("postgresql://kv@db/kv?timeout=3", "timeout"),
                               ("mysql://kv@db/kv", "expected postgresql://")] {
            XCTAssertThrowsError(try PostgresLocation(url: url, environment: [:]), url) { error in
                XCTAssertTrue("\(error)".contains(problem), "\(url): \(error)")
            }
        }
        XCTAssertThrowsError(try PostgresLocation(url: "postgresql://kv:secret@db", environment: [:])) { error in
            XCTAssertFalse("\(error)".contains("secret"), "a password is never echoed: \(error)")
        }
    }

    func testPlaceholdersAreNumberedOutsideQuotedText() {
        XCTAssertEqual(PostgresIndexConnection.numberPlaceholders("SELECT * FROM t WHERE a = ? AND b = '?' AND \"c?\" = ? LIMIT ?"),
                       "SELECT * FROM t WHERE a = $1 AND b = '?' AND \"c?\" = $2 LIMIT $3")
    }

    func testAMigrationIsSplitIntoItsStatements() {
        let sql = """
        CREATE TABLE a (x TEXT); -- a comment; with a semicolon
        INSERT INTO a VALUES ('one; two');
        CREATE INDEX a_x ON a(x);
        """
        XCTAssertEqual(PostgresIndexConnection.statements(sql),
                       ["CREATE TABLE a (x TEXT)", "INSERT INTO a VALUES ('one; two')", "CREATE INDEX a_x ON a(x)"])
    }

    func testLockKeysAreStableAndDistinct() {
        XCTAssertEqual(PostgresIndexConnection.lockKey("migrations"), PostgresIndexConnection.lockKey("migrations"))
        XCTAssertNotEqual(PostgresIndexConnection.lockKey("0123abcd"), PostgresIndexConnection.lockKey("0123abce"))
        // FNV-1a 64 of "a", as a signed 64-bit key: the same on every host.
        XCTAssertEqual(PostgresIndexConnection.lockKey("a"), Int(Int64(bitPattern: 0xaf63_dc4c_8601_ec8c)))
    }

    func testFlagsNameTheStoreTheyDescribe() throws {
        let env = ["AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "HOME": "/home/u"]
        let fleet = try StoreSpec(store: "s3://kv-fleet/prod", index: "postgresql://kv@db/kv", cache: "/c", cacheSize: "20GB", environment: env)
        guard case .s3(let s3) = fleet.blobs, case .postgres(let pg) = fleet.index else { return XCTFail("\(fleet.description)") }
        XCTAssertEqual([s3.bucket, s3.prefix, pg.host], ["kv-fleet", "prod", "db"])
        XCTAssertEqual(fleet.cacheCapacity, 20_000_000_000)
        XCTAssertNil(fleet.sqliteIndexFile)
        let local = try StoreSpec(store: "file:///var/lib/kv", environment: env)
        XCTAssertEqual(local.sqliteIndexFile, "/var/lib/kv/index.sqlite")
        let nfs = try StoreSpec(store: "/mnt/shared/kv", index: "postgresql://kv@db/kv", environment: env)
        guard case .directory("/mnt/shared/kv") = nfs.blobs, case .postgres = nfs.index else { return XCTFail(nfs.description) }

        XCTAssertThrowsError(try StoreSpec(store: "s3://kv-fleet/prod", environment: env)) { XCTAssertEqual($0 as? StoreSpecError, .missingIndex("s3://kv-fleet/prod")) }
        XCTAssertThrowsError(try StoreSpec(store: "/var/lib/kv", cache: "/c", environment: env)) { XCTAssertEqual($0 as? StoreSpecError, .cacheWithoutS3("/var/lib/kv")) }
        XCTAssertThrowsError(try StoreSpec(store: "gs://bucket", environment: env)) { XCTAssertTrue("\($0)".contains("s3://BUCKET")) }
        XCTAssertThrowsError(try StoreSpec(store: "s3://kv-fleet", index: "/i", cacheSize: "lots", environment: env)) {
            XCTAssertEqual($0 as? StoreSpecError, .badCacheSize("lots"))
        }
    }
}
