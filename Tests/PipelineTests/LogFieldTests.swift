import XCTest
@testable import Pipeline

/// Log values: one event is one line, whatever a file name or an error holds.
final class LogFieldTests: XCTestCase {
    func testPlainValuesStayBareAndOthersAreQuotedAndEscaped() {
        XCTAssertEqual(LogField.escaped("a.safetensors"), "a.safetensors")
        XCTAssertEqual(LogField.escaped("my file"), "\"my file\"")
        XCTAssertEqual(LogField.escaped("k=v"), "\"k=v\"")
        XCTAssertEqual(LogField.escaped(""), "\"\"")
        XCTAssertEqual(LogField.escaped("a\nb\r\t\"c\"\\"), "\"a\\nb\\r\\t\\\"c\\\"\\\\\"")
        XCTAssertEqual(LogField.escaped("esc\u{1B}[31m"), "\"esc\\u{1b}[31m\"")
        XCTAssertEqual(LogField.escaped("line\u{2028}sep"), "\"line\\u{2028}sep\"")
        XCTAssertEqual(LogField.escaped("é"), "é")
    }

    func testLongValuesAreCutWithTheirLengthNoted() {
        let cut = LogField.escaped(String(repeating: "n", count: 70_000))
        XCTAssertEqual(cut, "\"" + String(repeating: "n", count: LogField.limit) + "…(70000 characters)\"")
    }
}
