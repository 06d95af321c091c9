import Foundation
import XCTest
import LightKV
@testable import Pipeline

final class PolicyFileTests: XCTestCase {
    private let text = """
        kind = "policies"

        [hot]
        description = "fetched again soon"
        reduction = "lightkv"
        quantization = "int8"

        [cold]
        reduction = "lightkv35"
        quantization = "int4g128m0t0"
        codec = "zstd19"

        [plain]
        """

    func testNamesResolveAndMissingPartsDefault() throws {
        let file = try PolicyFile(parsing: text, file: "p.toml")
        XCTAssertEqual(try file.resolve("hot").name, "lightkv+int8g32+zstd3")
        XCTAssertEqual(try file.resolve("cold").codec, .zstd(level: 19))
        XCTAssertEqual(try file.resolve("plain").name, "none+zstd3")
        XCTAssertEqual(file.policies["hot"]?.description, "fetched again soon")
        XCTAssertEqual(try file.resolve("lightkv+int4").name, try Policy(parsing: "lightkv+int4").name, "spellings still work")
        XCTAssertThrowsError(try file.resolve("warm")) { XCTAssertTrue("\($0)".contains("\"warm\""), "\($0)") }
    }

    func testErrorsNameFileLineAndKey() {
        let cases: [(String, String)] = [
            ("kind = \"policies\"\n[warm]\nquantization = \"int3\"\n", "p.toml:3: warm.quantization"),
            ("kind = \"policies\"\n[warm]\ncodex = \"lz4\"\n", "p.toml:3: unknown key warm.codex"),
            ("kind = \"policies\"\n[warm]\ncodec = 3\n", "p.toml:3: warm.codec: expected a string"),
            ("kind = \"policies\"\n[int8]\n", "p.toml:2: [int8]: \"int8\" already spells a policy"),
            ("kind = \"ingest\"\n", "p.toml:1: kind: expected \"policies\""),
            ("[hot]\n", "p.toml: missing kind"),
        ]
        for (source, expected) in cases {
            XCTAssertThrowsError(try PolicyFile(parsing: source, file: "p.toml"), source) {
                XCTAssertTrue("\($0)".contains(expected), "\"\($0)\" should contain \"\(expected)\"")
            }
        }
    }

    func testJobSpecsUseTheNamesOfTheirPolicyFile() throws {
        let dir = NSTemporaryDirectory() + "policyfile-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try text.write(toFile: dir + "/policies.toml", atomically: true, encoding: .utf8)
        let spec = """
            kind = "compact"
            policies = "policies.toml"
            [compact]
            cold_days = 30
            cold_policy = "cold"
            """
        guard case .compact(let job) = try JobSpec.parse(spec, file: dir + "/compact.toml") else { return XCTFail("not a compact job") }
        XCTAssertEqual(job.settings.coldPolicy?.name, "lightkv35+int4g128m0t0+zstd19")
        let typo = spec.replacingOccurrences(of: "\"cold\"", with: "\"colt\"")
        XCTAssertThrowsError(try JobSpec.parse(typo, file: dir + "/compact.toml")) {
            XCTAssertTrue("\($0)".contains("compact.cold_policy"), "\($0)")
        }
    }

    func testTheShippedPolicyFileIsValid() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let file = try PolicyFile.load(path: repo.path + "/jobs/policies.toml")
        XCTAssertEqual(Set(file.policies.keys), ["exact", "hot", "cold"])
    }
}
