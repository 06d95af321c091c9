import Foundation
import XCTest
import LightKV

/// `kvstore eval --frontier` and requested-vs-kept retention, as users run them.
final class FrontierTests: XCTestCase {
    func testFrontierWritesATableAndAnSVGWithOneCurvePerMethodAndQuantization() throws {
        let s = try Scratch()
        let snap = s.path + "/tiny.safetensors"
        XCTAssertEqual(try s.cli.run("synth", "--preset", "tiny", "-o", snap).status, 0)
        let svg = s.path + "/frontier.svg"
        let r = try s.cli.run("eval", "--frontier", snap, "--svg", svg, "--methods", "aircache,airmerge,lightkv",
                              "--retentions", "20,55", "--quantizations", "f16,int4")
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = r.stdout.split(separator: "\n").filter { $0.hasPrefix("| tiny.safetensors") }
        XCTAssertEqual(rows.count, 3 * 2 * 2, r.stdout)
        XCTAssertTrue(rows.contains { $0.contains("| airmerge+int4 | airmerge20+int4 | 20.0% |") }, r.stdout)
        let plot = try String(contentsOfFile: svg, encoding: .utf8)
        XCTAssertTrue(plot.hasPrefix("<svg"), plot)
        XCTAssertEqual(plot.components(separatedBy: "<polyline").count - 1, 6, "one curve per method and quantization")
        XCTAssertTrue(plot.contains("airmerge+int4"))

        let missing = try s.cli.run("eval", "--frontier", snap)
        XCTAssertEqual(missing.status, 1, "the plot needs a place")
        XCTAssertTrue(missing.stderr.contains("--svg"), missing.stderr)
    }

    func testEvalShowsAskedAgainstKeptAndRefusesWhatItCannotKeep() throws {
        let s = try Scratch()
        let snap = s.path + "/tiny.safetensors"
        XCTAssertEqual(try s.cli.run("synth", "--preset", "tiny", "-o", snap).status, 0)
        let ok = try s.cli.run("eval", snap, "--policy", "aircache20", "--policy", "lightkv")
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let line = ok.stdout.split(separator: "\n").first { $0.hasPrefix("aircache20") } ?? ""
        XCTAssertEqual(line.split(separator: " ").prefix(3).map(String.init), ["aircache20+zstd3", "20.0%", "19.8%"], ok.stdout)
        // 1% of one 8×8 image over 3 layers: a merge stage keeps at least 5%, one entry per frame.
        let refused = try s.cli.run("eval", snap, "--policy", "lightkv1")
        XCTAssertEqual(refused.status, 1, refused.stdout)
        XCTAssertTrue(refused.stderr.contains("lightkv1") && refused.stderr.contains("would keep"), refused.stderr)
        let ingest = try s.cli.run("ingest", "--policy", "lightkv1", snap)
        XCTAssertEqual(ingest.status, 1, ingest.stderr)
        XCTAssertEqual(try s.cli.run("ls", "--json").stdout.filter { !$0.isWhitespace }, "[]", "nothing stored")
    }

    func testAirmergeIngestsAndFetchesExpandedWithEveryKeptMemberAtItsPosition() throws {
        let s = try Scratch()
        let snap = s.path + "/tiny.safetensors"
        XCTAssertEqual(try s.cli.run("synth", "--preset", "tiny", "-o", snap).status, 0)
        let r = try s.cli.run("ingest", "--policy", "airmerge20+int4g128m0t0r1", snap)
        XCTAssertEqual(r.status, 0, r.stderr)
        let id = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try s.withFetchedAndExpanded(id) { before, after in
            for i in 0..<before.layerCount {
                let sizes = before.sizes(layer: i), positions = after.positions(layer: i)
                XCTAssertEqual(positions.count, sizes.reduce(0) { $0 + Int($1) }, "one expanded entry per member")
                XCTAssertEqual(positions, positions.sorted(), "ascending")
                XCTAssertEqual(Set(positions).count, positions.count, "no position twice")
            }
        }
    }
}
