import XCTest
import LightKV

final class PolicyTests: XCTestCase {
    func testPartsInAnyOrderMakeOneCanonicalName() throws {
        XCTAssertEqual(try Policy(parsing: "int8+lightkv").name, try Policy(parsing: "lightkv+int8+zstd3").name)
        XCTAssertEqual(try Policy(parsing: "none").name, "none+zstd3")
        XCTAssertEqual(try Policy(parsing: "lightkv+int4g64+zstd9").codec, .zstd(level: 9))
        XCTAssertEqual(try Policy(parsing: "none+lz4").codec, .lz4)
    }

    func testErrorsNameTheWholePolicyAndTheBadPart() {
        for (text, part) in [("lightkv+int4g33", "int4g33"), ("lightkv+zstd20", "zstd20"), ("lightkv+", ""),
                             ("lightkv+tome", "tome"), ("int8+int4", "int4"), ("lightkv+frobnicate", "frobnicate")] {
            XCTAssertThrowsError(try Policy(parsing: text), text) { error in
                XCTAssertTrue("\(error)".contains("policy \"\(text)\": part \"\(part)\""), "\(error)")
            }
        }
    }
}
