import Foundation
import XCTest
import Store
@testable import SharedStore

/// A store config file (`--store-config`, docs/DESIGN.md "Store URL and config") names the
/// whole store, wins over the environment, and every problem in it names its file, line and key.
final class StoreConfigTests: XCTestCase {
    private var directory: String!

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "kvstore-config-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

    private let environment = ["AWS_ENDPOINT_URL": "http://env-host:9000", "AWS_REGION": "eu-west-1",
                               "AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "envsecret", "AWS_SESSION_TOKEN": "envtoken",
                               "XDG_CACHE_HOME": "/env-cache"]

    /// Writes `text` as `name` with `mode` and returns its path.
    private func file(_ text: String, _ name: String = "store.toml", mode: Int = 0o600) throws -> String {
        let path = directory + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        return path
    }

    private func spec(_ path: String, environment: [String: String]? = nil) throws -> StoreSpec {
        try StoreSpec(settings: StoreSettings(configFile: path), environment: environment ?? self.environment)
    }

    func testTheDocumentedFileNamesBlobsInS3AnIndexInPostgresAndACacheAndWinsOverTheEnvironment() throws {
        let path = try file("""
            # the example of docs/DESIGN.md
            [blobs]
            url = "s3://kv-fleet/prod"
            endpoint = "http://10.0.0.5:8333"
            region = "us-east-2"
            access_key_id = "FILEKEY"
            secret_access_key = "filesecret"
            [index]
            url = "postgresql://kvstore@10.0.0.6/kvstore"
            [cache]
            dir = "cache"          # relative to this file
            size = "20GB"
            """)
        let spec = try spec(path)
        guard case .s3(let s3) = spec.blobs else { return XCTFail("\(spec.blobs)") }
        XCTAssertEqual(s3.bucket, "kv-fleet")
        XCTAssertEqual(s3.prefix, "prod")
        XCTAssertEqual(s3.endpoint.absoluteString, "http://10.0.0.5:8333")
        XCTAssertEqual(s3.region, "us-east-2")
        XCTAssertEqual(s3.accessKeyID, "FILEKEY")
        XCTAssertEqual(s3.secretAccessKey, "filesecret")
        XCTAssertNil(s3.sessionToken, "the environment's token never goes with the file's keys")
        guard case .postgres(let pg) = spec.index else { return XCTFail("\(spec.index)") }
        XCTAssertEqual(pg.redacted, "postgresql://kvstore@10.0.0.6:5432/kvstore")
        XCTAssertEqual(spec.cacheDirectory, directory + "/cache")
        XCTAssertEqual(spec.cacheCapacity, 20_000_000_000)
    }

    func testAFileWithWindowsLineEndingsReadsLikeOneWithout() throws {
        let path = try file("# written on Windows\r\n[blobs]\r\nurl = \"s3://kv-fleet/prod\"\r\n[index]\r\nurl = \"index\"\r\n", "crlf.toml")
        let spec = try spec(path)
        guard case .s3(let s3) = spec.blobs else { return XCTFail("\(spec.blobs)") }
        XCTAssertEqual(s3.bucket, "kv-fleet")
        XCTAssertEqual(s3.prefix, "prod")
        do {
            _ = try self.spec(try file("[blobs]\r\nurl = 5\r\n", "bad.toml"))
            XCTFail("a number is not a URL")
        } catch {
            XCTAssertTrue("\(error)".contains("bad.toml:2"), "the error names the second line: \(error)")
        }
    }

    func testTheShippedExampleIsValid() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let spec = try spec(root + "/jobs/store.toml")
        XCTAssertEqual(spec.description, "s3://kv-fleet/prod (index postgresql://kvstore@10.0.0.6:5432/kvstore)")
        XCTAssertEqual(spec.cacheCapacity, 20_000_000_000)
    }

    func testWhatTheFileLeavesOutComesFromTheEnvironment() throws {
        let path = try file("[blobs]\nurl = \"s3://kv-fleet\"\n[index]\nurl = \"index\"\n")
        let spec = try spec(path)
        guard case .s3(let s3) = spec.blobs else { return XCTFail("\(spec.blobs)") }
        XCTAssertEqual(s3.endpoint.absoluteString, "http://env-host:9000")
        XCTAssertEqual(s3.region, "eu-west-1")
        XCTAssertEqual([s3.accessKeyID, s3.secretAccessKey, s3.sessionToken], ["ENVKEY", "envsecret", "envtoken"])
        guard case .sqlite(let indexDirectory) = spec.index else { return XCTFail("\(spec.index)") }
        XCTAssertEqual(indexDirectory, directory + "/index")
        XCTAssertEqual(spec.cacheDirectory, "/env-cache/kvstore")
        XCTAssertEqual(spec.cacheCapacity, StoreSpec.defaultCacheCapacity)
    }

    func testALocalStoreMayKeepItsIndexInAnotherDirectory() throws {
        let spec = try spec(try file("[blobs]\nurl = \"blobs\"\n[index]\nurl = \"file:///srv/index\"\n"))
        guard case .directory(let blobs) = spec.blobs else { return XCTFail("\(spec.blobs)") }
        XCTAssertEqual(blobs, directory + "/blobs")
        XCTAssertEqual(spec.sqliteIndexFile, "/srv/index/index.sqlite")
        XCTAssertEqual(spec.description, "\(directory!)/blobs (index /srv/index)")
    }

    func testEveryProblemNamesTheFileTheLineAndTheKey() throws {
        let s3 = "[blobs]\nurl = \"s3://kv-fleet/prod\"\n"
        let cases: [(String, String)] = [
            (s3 + "[index]\nurl = \"i\"\n[metrics]\nport = 1\n", ":5: unknown key [metrics] (known: [blobs], [index], [cache])"),
            (s3 + "endpiont = \"http://h\"\n[index]\nurl = \"i\"\n", ":3: unknown key blobs.endpiont (known: blobs.url, blobs.endpoint"),
            ("url = \"/srv\"\n", ":1: unknown key url (known: blobs.url, "),
            (s3 + "[index]\nurl = \"i\"\n[cache]\nsize = 20\n", ":6: cache.size: expected a string, got an integer"),
            (s3 + "[index]\nurl = \"i\"\n[cache]\nsize = \"lots\"\n", ":6: cache.size: \"lots\" is not a size such as \"500MB\" or \"20GB\""),
            ("[blobs]\nurl = \"s3://Kv_Fleet\"\n[index]\nurl = \"i\"\n", ":2: blobs.url: store URL s3://Kv_Fleet: bucket \"Kv_Fleet\""),
            ("[blobs]\nurl = \"http://kv-fleet\"\n", ":2: blobs.url: store http://kv-fleet: a store is a directory, file:///PATH or s3://BUCKET[/PREFIX]"),
            (s3 + "endpoint = \"ftp://h\"\n[index]\nurl = \"i\"\n", ":3: blobs.endpoint: \"ftp://h\" is not http(s)://HOST[:PORT]"),
            (s3, ":2: blobs.url: an s3:// store needs its index named: index.url = a directory"),
            (s3 + "[index]\nurl = \"mysql://h/db\"\n", ":4: index.url: store mysql://h/db: a store is a directory"),
            (s3 + "[index]\nurl = \"postgresql://h/db\"\n", ":4: index.url: store postgresql://h/db: no user"),
            (s3 + "access_key_id = \"K\"\n[index]\nurl = \"i\"\n", ":3: blobs.access_key_id: set without secret_access_key"),
            (s3 + "session_token = \"T\"\n[index]\nurl = \"i\"\n", ":3: blobs.session_token: set without access_key_id and secret_access_key"),
            ("[blobs]\nurl = \"/srv/kv\"\n[cache]\ndir = \"/c\"\n", ":4: cache.dir: applies to s3:// stores only, not /srv/kv"),
            ("[blobs]\nurl = \"/srv/kv\"\nregion = \"us-east-1\"\n", ":3: blobs.region: applies to s3:// stores only, not /srv/kv"),
            ("[blobs]\nurl = \"/srv/kv\"\nurl = \"/srv/kv2\"\n", ":3: blobs.url is set twice"),
            ("[index]\nurl = \"/srv/index\"\n", ": missing blobs.url (no [blobs] table)"),
        ]
        for (text, expected) in cases {
            let path = try file(text)
            XCTAssertThrowsError(try spec(path), text) { error in
                XCTAssertTrue("\(error)".hasPrefix(path + expected), "\(error)\nexpected: \(path + expected)")
            }
        }
    }

    func testMissingCredentialsSayWhereTheyMayComeFrom() throws {
        let path = try file("[blobs]\nurl = \"s3://kv-fleet\"\n[index]\nurl = \"i\"\n")
        XCTAssertThrowsError(try spec(path, environment: [:])) { error in
            XCTAssertTrue("\(error)".hasPrefix(path + ":2: blobs.url: S3 store: AWS_ACCESS_KEY_ID is not set"), "\(error)")
            XCTAssertTrue("\(error)".contains("[blobs] table"), "\(error)")
        }
    }

    func testAFileOthersCanReadIsWarnedAboutOnlyWhenItHoldsASecret() throws {
        let secret = "[blobs]\nurl = \"s3://kv-fleet\"\naccess_key_id = \"K\"\nsecret_access_key = \"S\"\n[index]\nurl = \"postgresql://kv:pw@h/db\"\n"
        let open = try StoreSettings(configFile: try file(secret, "open.toml", mode: 0o644))
        XCTAssertEqual(open.warnings.count, 1)
        XCTAssertTrue(open.warnings[0].contains("open.toml holds a secret (blobs.secret_access_key, index.url)"), open.warnings[0])
        XCTAssertTrue(open.warnings[0].contains("mode 644"), open.warnings[0])
        XCTAssertEqual(try StoreSettings(configFile: try file(secret, "closed.toml", mode: 0o600)).warnings, [])
        XCTAssertEqual(try StoreSettings(configFile: try file("[blobs]\nurl = \"s3://kv-fleet\"\n", "plain.toml", mode: 0o644)).warnings, [],
                       "no secret, nothing to warn about")
    }

    func testAnUnreadableFileIsNamed() {
        XCTAssertThrowsError(try StoreSettings(configFile: directory + "/absent.toml")) { error in
            XCTAssertTrue("\(error)".hasPrefix(directory + "/absent.toml: cannot read"), "\(error)")
        }
    }

    func testTheURLPathStillReadsTheEnvironment() throws {
        let location = try S3Location(url: "s3://kv-fleet/a/b/", environment: environment)
        XCTAssertEqual(location.prefix, "a/b")
        XCTAssertEqual(location.endpoint.absoluteString, "http://env-host:9000")
        XCTAssertEqual(location.sessionToken, "envtoken")
        XCTAssertThrowsError(try S3Location(url: "s3://kv-fleet", environment: ["AWS_ENDPOINT_URL": "ftp://h"])) { error in
            XCTAssertEqual("\(error)", "S3 endpoint \"ftp://h\" (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL) is not http(s)://HOST[:PORT]")
        }
    }
}
