import Foundation
import XCTest
@testable import LightKV

/// A header costs bounded memory and time to parse whatever its writer put in it.
final class KVSnapLimitTests: XCTestCase {
    /// A safetensors file whose header is `json`, with an empty data buffer.
    private func file(_ json: String) -> [UInt8] {
        let header = Array(json.utf8)
        return withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) } + header
    }

    private func limitError(_ bytes: [UInt8]) -> String? {
        do {
            _ = try bytes.withUnsafeBytes { try SafetensorsHeader(parsing: $0) }
            return nil
        } catch {
            guard case KVSnapError.overLimit = error else { return "not a limit error: \(error)" }
            return "\(error)"
        }
    }

    func testAHeaderOverFourMebibytesIsRefusedBeforeParsing() {
        let big = String(repeating: "x", count: KVSnapLimits.headerBytes)
        let message = limitError(file("{\"__metadata__\": {\"k\": \"\(big)\"}}"))
        XCTAssertNotNil(message)
        XCTAssertTrue(message?.contains("limit of 4194304") == true, message ?? "")
    }

    func testAMetadataValueOverOneMebibyteIsRefusedNamingItsKey() {
        let big = String(repeating: "x", count: KVSnapLimits.metadataValueBytes + 1)
        let message = limitError(file("{\"__metadata__\": {\"kvsnap.spans\": \"\(big)\"}}"))
        XCTAssertTrue(message?.contains("metadata kvsnap.spans of 1048577 bytes") == true, message ?? "nil")
    }

    func testTooManyTensorsAreRefused() {
        let entries = (0...KVSnapLimits.tensors).map { "\"t\($0)\": {\"dtype\": \"F16\", \"shape\": [0], \"data_offsets\": [0, 0]}" }
        let message = limitError(file("{" + entries.joined(separator: ", ") + "}"))
        XCTAssertTrue(message?.contains("16385 tensors") == true, message ?? "nil")
    }

    func testTooManyMetadataEntriesAreRefused() {
        let entries = (0...KVSnapLimits.metadataEntries).map { "\"k\($0)\": \"v\"" }
        let message = limitError(file("{\"__metadata__\": {" + entries.joined(separator: ", ") + "}}"))
        XCTAssertTrue(message?.contains("1025 entries") == true, message ?? "nil")
    }

    func testHeadersWithinTheLimitsStillParse() throws {
        let value = String(repeating: "x", count: KVSnapLimits.metadataValueBytes)
        let bytes = file("{\"__metadata__\": {\"note\": \"\(value)\"}}")
        XCTAssertEqual(try bytes.withUnsafeBytes { try SafetensorsHeader(parsing: $0) }.metadata["note"]?.count, value.count)
    }
}
