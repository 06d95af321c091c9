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
        // dense=0: the snapshot's random keys would make its image text-dense (docs/design/dense.md).
        let id = try s.cli.run("ingest", "--policy", "lightkv:dense=0+int8", try s.snapshot("a.safetensors")).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
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
        // The 4×4 image: every token drawn once in each stage's map, merged ones by group.
        let maps = Self.maps(page)
        XCTAssertGreaterThanOrEqual(maps.count, 1)
        for map in maps { XCTAssertEqual(map.cells.count, 16, "a cell per token") }
        XCTAssertTrue(maps.contains { !$0.groups.isEmpty }, "some tokens were merged and are coloured by group")
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

    /// The pages a new user meets, at a desktop and a narrow window: a video entry (8 frames),
    /// a 32-layer LLaVA-shaped image entry, and an index of 500 entries. None scrolls sideways,
    /// none is heavy, every table starts with a real row, and the index's links and buttons are
    /// there. Screenshots go to $KVSTORE_SCREENSHOTS when set.
    func testPagesFitA1400And800PixelWindowWithAVideoALLaVAEntryAnd500Entries() throws {
        guard Self.chromium != nil else { throw XCTSkip("headless Chromium is not installed (apt-get install chromium): the web page test is skipped") }
        let s = try Scratch()
        func synthIngest(_ args: [String], policy: String) throws -> String {
            let file = s.path + "/synth-\(UUID().uuidString).safetensors"
            XCTAssertEqual(try s.cli.run(["synth"] + args + ["-o", file]).status, 0)
            let r = try s.cli.run("ingest", "--policy", policy, file)
            XCTAssertEqual(r.status, 0, r.stderr)
            return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let video = try synthIngest(["--preset", "video", "--kv-heads", "1", "--q-heads", "1", "--head-dim", "16", "--layers", "4"], policy: "lightkv")
        let llava = try synthIngest(["--preset", "llava", "--kv-heads", "2", "--q-heads", "2", "--head-dim", "32"], policy: "lightkv+int8")
        XCTAssertEqual(try s.cli.run("synth", "--preset", "tiny", "--count", "498", "-o", s.path + "/many").status, 0)
        let many = try FileManager.default.contentsOfDirectory(atPath: s.path + "/many").sorted().map { s.path + "/many/" + $0 }
        XCTAssertEqual(try s.cli.run(["ingest", "--policy", "none"] + many).status, 0)
        let server = try ServerProcess(s)
        let base = "http://127.0.0.1:\(server.port)"
        let shots = ProcessInfo.processInfo.environment["KVSTORE_SCREENSHOTS"] ?? s.path

        let pages = [("index", "/"), ("video", "/entries/\(video)"), ("llava", "/entries/\(llava)")]
        for (name, path) in pages {
            let reply = try server.get(path)
            XCTAssertEqual(reply.status, 200, path)
            XCTAssertLessThan(reply.body.count, 400_000, "\(name): \(reply.body.count) bytes of HTML")
            // The first row of every table says something (no empty header row).
            for table in reply.text.components(separatedBy: "<table").dropFirst() {
                let firstRow = table.components(separatedBy: "<tr>").dropFirst().first ?? ""
                let text = firstRow.replacingOccurrences(of: "<[^>]*>", with: "", options: .regularExpression)
                XCTAssertFalse(text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(name): a table starts with an empty row")
            }
            for width in [1400, 800] {
                let (scrollWidth, viewport) = try layoutWidth(reply.text, window: width, scratch: s)
                XCTAssertEqual(viewport, width, name)
                XCTAssertLessThanOrEqual(scrollWidth, viewport, "\(name) at \(width) px scrolls sideways")
                let png = "\(shots)/\(name)-\(width).png"
                _ = try chromium(["--window-size=\(width),2200", "--screenshot=\(png)"], base + path, scratch: s)
                XCTAssertGreaterThan(try Data(contentsOf: URL(fileURLWithPath: png)).count, 10_000, png)
            }
        }

        let videoPage = try server.get("/entries/\(video)").text
        for f in 1...8 { XCTAssertTrue(videoPage.contains("<figcaption>frame \(f)</figcaption>"), "frame \(f) is labelled") }
        let llavaPage = try server.get("/entries/\(llava)").text
        for page in [videoPage, llavaPage] {
            for map in Self.maps(page) {
                // Neighbouring groups never share a colour.
                for (a, b) in map.touchingGroups() {
                    XCTAssertNotEqual(map.groups[a].fill, map.groups[b].fill, "groups \(a) and \(b) touch and look alike")
                }
            }
        }

        let index = try server.get("/").text
        XCTAssertTrue(index.contains("1–100 of 500"), "a page of 100, with the total")
        XCTAssertTrue(index.contains("href=\"/?page=5\">last »"), "paging past the newest 100")
        XCTAssertTrue(index.contains("href=\"/?model=synth%2Ftiny\""), "a model is a filter")
        XCTAssertTrue(index.contains("href=\"/?policy="), "a policy is a filter")
        XCTAssertTrue(index.contains("fidelity error") && index.contains("last fetched (UTC)"))
        XCTAssertTrue(index.contains("href=\"/?sort=in\">in</a>"), "columns sort")
        XCTAssertTrue(index.contains("action=\"/entries/\(llava)/pin\"") || index.contains("action=\"/entries/"), "buttons without tokens on loopback")
        let last = try server.get("/?page=5").text
        XCTAssertTrue(last.contains("401–500 of 500"), "the oldest entries are reachable")
        let tiny = try server.get("/?model=synth%2Ftiny&sort=key&order=asc").text
        XCTAssertTrue(tiny.contains("1–100 of 498"), "filtered by model")
        XCTAssertTrue(tiny.components(separatedBy: "synth-tiny-").dropFirst().first?.hasPrefix("0<") ?? false, "sorted by key, the smallest first")
        XCTAssertEqual(server.stop(), 0)
    }

    /// The width of the laid-out document and of the window, measured by Chromium: the page is
    /// saved with a script that writes both into the DOM (the served page runs no script).
    private func layoutWidth(_ html: String, window: Int, scratch: Scratch) throws -> (Int, Int) {
        let probe = "<script>document.body.dataset.scroll=document.documentElement.scrollWidth;document.body.dataset.inner=window.innerWidth</script>"
        let file = scratch.path + "/probe-\(UUID().uuidString).html"
        try Data(html.replacingOccurrences(of: "</body>", with: probe + "</body>").utf8).write(to: URL(fileURLWithPath: file))
        let dom = try chromium(["--window-size=\(window),1000", "--dump-dom"], "file://" + file, scratch: scratch)
        func attribute(_ name: String) -> Int {
            guard let r = dom.range(of: "data-\(name)=\"") else { return -1 }
            return Int(dom[r.upperBound...].prefix { $0.isNumber }) ?? -1
        }
        return (attribute("scroll"), attribute("inner"))
    }

    /// A retention map read back from its SVG: which cells each group path covers.
    struct Map {
        var groups: [(fill: String, cells: Set<[Int]>)] = []
        var cells: [[Int]] = []

        /// Pairs of groups with cells side by side or one above the other.
        func touchingGroups() -> [(Int, Int)] {
            var owner: [[Int]: Int] = [:]
            for (i, g) in groups.enumerated() { for c in g.cells { owner[c] = i } }
            var pairs: Set<[Int]> = []
            for (cell, g) in owner {
                for n in [[cell[0] + 1, cell[1]], [cell[0], cell[1] + 1]] {
                    if let h = owner[n], h != g { pairs.insert([min(g, h), max(g, h)]) }
                }
            }
            return pairs.map { ($0[0], $0[1]) }
        }
    }

    static func maps(_ page: String) -> [Map] {
        page.components(separatedBy: "<svg").dropFirst().map { svg in
            var map = Map()
            let body = svg.components(separatedBy: "</svg>")[0]
            for path in body.components(separatedBy: "<path").dropFirst() {
                guard let fill = path.range(of: "fill=\""), let d = path.range(of: " d=\"") else { continue }
                let colour = String(path[fill.upperBound...].prefix { $0 != "\"" })
                var cells: Set<[Int]> = []
                for run in path[d.upperBound...].prefix(while: { $0 != "\"" }).split(separator: "M") {
                    // "X Yh<W>v<H>h-<W>z": a run of cells H wide each.
                    let n = run.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
                    guard n.count >= 4, n[3] > 0 else { continue }
                    for x in stride(from: n[0], to: n[0] + n[2], by: n[3]) { cells.insert([x / n[3], n[1] / n[3]]) }
                }
                map.cells += cells
                if path.hasPrefix(" class=\"g\"") { map.groups.append((colour, cells)) }
            }
            return map
        }
    }
}
