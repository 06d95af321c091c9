import Foundation
import XCTest

/// The web page as a person sees it: rendered by headless Chromium (Debian's `chromium`).
final class WebPageTests: XCTestCase {
    static var chromium: String? {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs headless Chromium on `url` with `args`; returns what it printed. The page's
    /// console goes to its log, which must report no `Content-Security-Policy` refusal (a
    /// style the policy blocks would leave the page unstyled).
    private func chromium(_ args: [String], _ url: String, scratch: Scratch) throws -> String {
        guard let binary = Self.chromium else {
            throw XCTSkip("headless Chromium is not installed (apt-get install chromium): the web page test is skipped")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=\(scratch.path)/chromium",
                       "--enable-logging=stderr", "--v=0"] + args + [url]
        let out = Pipe()
        let log = scratch.path + "/chromium-\(UUID().uuidString).log"
        FileManager.default.createFile(atPath: log, contents: nil)
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: log)
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let console = try String(contentsOfFile: log, encoding: .utf8)
        XCTAssertFalse(console.contains("Content Security Policy") || console.contains("Content-Security-Policy"),
                       "the page's policy refused something: \(console.split(separator: "\n").filter { $0.contains("Security Policy") }.prefix(3))")
        return String(decoding: data, as: UTF8.self)
    }

    func testOverviewSearchAndEntryPageRenderInChromium() throws {
        guard Self.chromium != nil else { throw XCTSkip("headless Chromium is not installed (apt-get install chromium): the web page test is skipped") }
        let s = try Scratch()
        let id = try s.cli.run("ingest", "--policy", "lightkv+int8", try s.snapshot("a.safetensors")).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let other = try s.cli.run("ingest", "--policy", "none", try s.snapshot("b.safetensors", seed: 5)).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try ServerProcess(s)
        let base = "http://127.0.0.1:\(server.port)"

        let overview = try chromium(["--dump-dom"], base + "/", scratch: s)
        XCTAssertTrue(overview.contains("entries</span><b>2</b>"), "the store at a glance")
        XCTAssertTrue(overview.contains("href=\"/entries/\(id)\"") && overview.contains("href=\"/entries/\(other)\""))
        XCTAssertTrue(overview.contains("test/model"))

        let search = try chromium(["--dump-dom"], base + "/?q=key-5", scratch: s)
        XCTAssertTrue(search.contains("/entries/\(other)"), "search by producer key")
        XCTAssertFalse(search.contains("/entries/\(id)\""), "the other entry is filtered out")

        let page = try chromium(["--dump-dom"], base + "/entries/\(id.prefix(8))", scratch: s)
        XCTAssertTrue(page.contains("Retention map"))
        // The 4×4 image: one cell per token in each stage's map, coloured by group.
        let svgs = page.components(separatedBy: "<svg").count - 1
        XCTAssertGreaterThanOrEqual(svgs, 1)
        XCTAssertEqual(page.components(separatedBy: "<rect").count - 1, 16 * svgs)
        XCTAssertTrue(page.contains("hsl("), "some tokens were merged and are coloured by group")
        XCTAssertTrue(page.contains("relative error"), "the recorded fidelity")
        XCTAssertTrue(page.contains("nominal_retention"), "the compression record")
        XCTAssertTrue(page.contains("sha256:" + String(repeating: "ef", count: 32)), "the image source")

        let png = s.path + "/entry.png"
        _ = try chromium(["--window-size=1200,1600", "--screenshot=\(png)"], base + "/entries/\(id)", scratch: s)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: png))
        XCTAssertEqual(Array(bytes.prefix(4)), [0x89, 0x50, 0x4E, 0x47], "a PNG")
        XCTAssertGreaterThan(bytes.count, 20_000, "a rendered page, not a blank one")
        XCTAssertEqual(server.stop(), 0)
    }
}
