import Foundation
import LightKV
import Store
import XCTest

/// A shared prefix stored once (docs/design/segments.md): N questions about one image store one
/// segment and N small parts; every command reads, checks, removes, repairs and copies them.
final class SegmentTests: XCTestCase {
    private func ingest(_ s: Scratch, _ file: String, policy: String = "none", store: String? = nil) throws -> String {
        let r = try s.cli.run(["ingest", "--policy", policy, file] + (store.map { ["--store", $0] } ?? []))
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func blobFiles(_ store: String) -> [String] {
        (FileManager.default.enumerator(atPath: store + "/blobs")?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".kvpack") }
    }

    private func record(_ s: Scratch, _ id: String) throws -> EntryRecord {
        try XCTUnwrap(try EntryIndex(path: s.path + "/store/index.sqlite").entry(id: id))
    }

    /// Three questions, one image: one segment, three parts; every fetch equals its input.
    func testQuestionsAboutOneImageStoreThePrefixOnceAndFetchBitExact() throws {
        let s = try Scratch()
        let inputs = try (1...3).map { try s.question("q\($0).safetensors", question: $0, prompt: 4 + $0) }
        let ids = try inputs.map { try ingest(s, $0) }
        XCTAssertEqual(blobFiles(s.path + "/store").count, 4, "one segment and three parts")
        let segments = Set(try ids.map { try record(s, $0).segment })
        XCTAssertEqual(segments.count, 1)
        XCTAssertNotNil(segments.first!)
        for (id, input) in zip(ids, inputs) {
            let out = try s.cli.run("fetch", id, "-o", "-")
            XCTAssertEqual(out.status, 0, out.stderr)
            let original = try Data(contentsOf: URL(fileURLWithPath: input))
            try original.withUnsafeBytes { a in
                try out.stdoutBytes.withUnsafeBytes { b in
                    let (x, y) = (try Snapshot(bytes: a), try Snapshot(bytes: b))
                    XCTAssertEqual(y.seqLen, x.seqLen)
                    XCTAssertEqual(y.tokenIDs(), x.tokenIDs())
                    for i in 0..<x.layerCount {
                        XCTAssertEqual(Array(y.data(y.layers[i].key)), Array(x.data(x.layers[i].key)), "layer \(i) keys")
                        XCTAssertEqual(Array(y.data(y.layers[i].value)), Array(x.data(x.layers[i].value)), "layer \(i) values")
                        XCTAssertEqual(y.positions(layer: i), (0..<Int32(x.seqLen)).map { $0 })
                    }
                }
            }
            let prefix = try s.cli.run("fetch", id, "--prefix", "-o", "-")
            XCTAssertEqual(prefix.status, 0, prefix.stderr)
            try prefix.stdoutBytes.withUnsafeBytes { b in
                let p = try Snapshot(bytes: b)
                XCTAssertEqual(p.seqLen, 20)
                XCTAssertEqual(p.layers.map(\.count), [20, 20])
                XCTAssertEqual(p.metadata.raw[SnapshotMetadata.prefixOfKey], id)
            }
        }
        // Raw: the part, and the segment beside it under its own name; two files, so not to stdout.
        let segment = try XCTUnwrap(segments.first!)
        try FileManager.default.createDirectory(atPath: s.path + "/raw", withIntermediateDirectories: true)
        let raw = try s.cli.run("fetch", ids[0], "--raw", "-o", s.path + "/raw/a.kvpack")
        XCTAssertEqual(raw.status, 0, raw.stderr)
        XCTAssertEqual(try PackReader(path: s.path + "/raw/a.kvpack").header.segment?.name, segment)
        XCTAssertTrue(try PackReader(path: s.path + "/raw/\(segment).kvpack").header.isSegment)
        let piped = try s.cli.run("fetch", ids[0], "--raw", "-o", "-")
        XCTAssertEqual(piped.status, 3)
        XCTAssertTrue(piped.stderr.contains("segmented"), piped.stderr)
        XCTAssertTrue(piped.stdoutBytes.isEmpty)
        let stats = try s.cli.run("stats")
        XCTAssertTrue(stats.stdout.contains("segments     1 shared prefix"), stats.stdout)
        XCTAssertEqual(try s.cli.run("verify").status, 0)
    }

    /// The stored-bytes target: ten questions about one image store about one snapshot's bytes.
    func testTenQuestionsStoreLittleMoreThanOne() throws {
        let s = try Scratch()
        let files = try (1...10).map { try s.question("q\($0).safetensors", question: $0) }
        _ = try ingest(s, files[0], policy: "int8", store: s.path + "/one")
        for f in files { _ = try ingest(s, f, policy: "int8") }
        let one = try EntryIndex(path: s.path + "/one/index.sqlite").storedBytes()
        let ten = try EntryIndex(path: s.path + "/store/index.sqlite").storedBytes()
        let onDisk = blobFiles(s.path + "/store").reduce(0) { $0 + (FileSystem.size(s.path + "/store/blobs/" + $1) ?? 0) }
        XCTAssertEqual(ten, onDisk, "stats count each segment once, as the disk holds it")
        XCTAssertLessThan(Double(ten), 10 * Double(one) / 2, "ten questions: \(ten) bytes, one: \(one)")
    }

    /// A prefix is shared only where its bytes agree: another image, another policy or a
    /// reducing policy store their own.
    func testOnlyIdenticalPrefixesShareASegment() throws {
        let s = try Scratch()
        let a = try record(s, try ingest(s, try s.question("a.safetensors", question: 1), policy: "int8"))
        let other = try record(s, try ingest(s, try s.question("b.safetensors", question: 2, seed: 5), policy: "int8"))
        let none = try record(s, try ingest(s, try s.question("c.safetensors", question: 3)))
        let reduced = try record(s, try ingest(s, try s.question("d.safetensors", question: 4), policy: "lightkv+int8"))
        let noIDs = try record(s, try ingest(s, try s.question("e.safetensors", question: 5, ids: false), policy: "int8"))
        XCTAssertEqual(Set([a.segment, other.segment, none.segment]).count, 3)
        XCTAssertNotNil(reduced.segment, "a guided reduction stores its question's prefix as a segment")
        XCTAssertFalse([a.segment, other.segment, none.segment].contains(reduced.segment))
        XCTAssertNil(noIDs.segment, "without input_ids nothing proves two prefixes agree")
    }

    /// A reduction that reads no prompt (`guide=none`, `tome`, `uniform`) leaves the prefix the
    /// same for every question: it is stored once, reduced, and every fetch gives what the same
    /// snapshot stored whole gives.
    func testAReductionThatReadsNoPromptStoresItsPrefixOnce() throws {
        let s = try Scratch()
        // dense=0: the snapshots' random keys would make their image text-dense, kept whole
        // (docs/design/dense.md), and this is about a prefix that is reduced.
        for (n, policy) in ["airmerge50:evict=0:guide=none:dense=0", "lightkv@0/2/0.5:guide=none:dense=0", "uniform50:dense=0+int8"].enumerated() {
            let store = s.path + "/s\(n)"
            let ids = try (1...3).map { try ingest(s, try s.question("q\(n)-\($0).safetensors", question: $0), policy: policy, store: store) }
            let index = try EntryIndex(path: store + "/index.sqlite")
            let segments = Set(try ids.map { try XCTUnwrap(index.entry(id: $0)).segment })
            XCTAssertEqual(segments.count, 1, policy)
            XCTAssertNotNil(segments.first!, policy)
            XCTAssertEqual(blobFiles(store).count, 4, "\(policy): one segment, three parts")
            let whole = try ingest(s, try s.question("w\(n).safetensors", question: 2, ids: false), policy: policy, store: store)
            XCTAssertNil(try index.entry(id: whole)?.segment)
            func layers(_ id: String, _ extra: [String] = []) throws -> [([UInt8], [UInt8], [Int32], [Int32])] {
                let r = try s.cli.run(["fetch", id, "--store", store, "-o", "-"] + extra)
                XCTAssertEqual(r.status, 0, r.stderr)
                return try r.stdoutBytes.withUnsafeBytes { b in
                    let x = try Snapshot(bytes: b)
                    return (0..<x.layerCount).map { i in
                        (Array(x.data(x.layers[i].key)), Array(x.data(x.layers[i].value)), x.positions(layer: i), x.sizes(layer: i))
                    }
                }
            }
            let segmented = try layers(ids[1]), reference = try layers(whole)
            XCTAssertTrue(segmented.contains { $0.3.contains { $0 > 1 } } || policy.hasPrefix("uniform"), "\(policy) reduced something")
            XCTAssertLessThan(segmented[0].2.count, 26, "\(policy) keeps fewer than every entry")
            for i in segmented.indices {
                XCTAssertEqual(segmented[i].0, reference[i].0, "\(policy) layer \(i) keys")
                XCTAssertEqual(segmented[i].1, reference[i].1, "\(policy) layer \(i) values")
                XCTAssertEqual(segmented[i].2, reference[i].2, "\(policy) layer \(i) positions")
                XCTAssertEqual(segmented[i].3, reference[i].3, "\(policy) layer \(i) sizes")
            }
            // The prefix alone: the reduced entries before the first prompt, expanded on request.
            let prefix = try layers(ids[0], ["--prefix"])
            XCTAssertEqual(prefix[0].2, segmented[0].2.filter { $0 < 20 }, policy)
            if !policy.hasPrefix("uniform") {
                let expanded = try layers(ids[0], ["--prefix", "--expand"])
                XCTAssertEqual(expanded[0].2, (0..<20).map { Int32($0) }, "\(policy): every member back in place")
            }
            XCTAssertEqual(try s.cli.run("verify", "--store", store).status, 0, policy)
        }
    }

    /// A reduction guided by the prompt stores the prefix the first question guided once; later
    /// questions about the same prefix name it (docs/design/segments.md, "A guided prefix").
    /// What the first question stores is what it stored whole; a later one's prompt is its own.
    func testAGuidedReductionStoresTheFirstQuestionsPrefixForEveryLaterOne() throws {
        let s = try Scratch()
        var guidanceMattered = false
        // dense=0: the fixtures' keys would make the image text-dense, kept whole.
        for (n, policy) in ["airmerge50:evict=0:dense=0", "aircache50:dense=0", "prompt-topk50:dense=0+int8"].enumerated() {
            let store = s.path + "/g\(n)"
            let inputs = try (1...3).map { try s.question("g\(n)-\($0).safetensors", question: $0) }
            let ids = try inputs.map { try ingest(s, $0, policy: policy, store: store) }
            let index = try EntryIndex(path: store + "/index.sqlite")
            let rows = try ids.map { try XCTUnwrap(index.entry(id: $0)) }
            XCTAssertEqual(Set(rows.map(\.segment)).count, 1, policy)
            XCTAssertNotNil(rows[0].segment, policy)
            XCTAssertEqual(blobFiles(store).count, 4, "\(policy): one segment, three parts")
            let source = try JSONDecoder().decode([String: String].self, from: Data(rows[2].compression.utf8))["prefix_source"]
            XCTAssertEqual(source?.count, 32, policy)
            // `show` says whose question guided the prefix.
            let shown = try [ids[0], ids[2]].map { try s.cli.run("show", $0, "--store", store).stdout }
            XCTAssertTrue(shown[0].contains("reduced as this entry's question guided"), shown[0])
            XCTAssertTrue(shown[1].contains("reduced as the question of entry \(ids[0].prefix(16)) guided"), shown[1])

            func layers(_ id: String, _ store: String) throws -> [([UInt8], [UInt8], [Int32], [Int32])] {
                let r = try s.cli.run(["fetch", id, "--store", store, "-o", "-"])
                XCTAssertEqual(r.status, 0, r.stderr)
                return try r.stdoutBytes.withUnsafeBytes { b in
                    let x = try Snapshot(bytes: b)
                    return (0..<x.layerCount).map { i in
                        (Array(x.data(x.layers[i].key)), Array(x.data(x.layers[i].value)), x.positions(layer: i), x.sizes(layer: i))
                    }
                }
            }
            // The first question's entry is the snapshot stored whole, bit for bit.
            let wholeStore = s.path + "/w\(n)"
            let whole = try ingest(s, try s.question("w\(n).safetensors", question: 1, ids: false), policy: policy, store: wholeStore)
            let first = try layers(ids[0], store), reference = try layers(whole, wholeStore)
            XCTAssertLessThan(first[0].2.count, 26, "\(policy) keeps fewer than every entry")
            for i in first.indices {
                XCTAssertEqual(first[i].2, reference[i].2, "\(policy) layer \(i) positions")
                XCTAssertEqual(first[i].3, reference[i].3, "\(policy) layer \(i) sizes")
                if !policy.hasSuffix("+int8") {  // int8's groups stop at the seam only when segmented
                    XCTAssertEqual(first[i].0, reference[i].0, "\(policy) layer \(i) keys")
                    XCTAssertEqual(first[i].1, reference[i].1, "\(policy) layer \(i) values")
                }
            }
            // A later question: the first question's prefix, then its own prompt.
            let third = try layers(ids[2], store)
            XCTAssertEqual(third[0].2.filter { $0 < 20 }, first[0].2.filter { $0 < 20 }, policy)
            XCTAssertEqual(Array(third[0].2.suffix(6)), (20..<26).map { Int32($0) }, "\(policy): every prompt entry of the third question")

            // Had the third question come first, it would have guided the prefix its own way.
            let alone = try ingest(s, inputs[2], policy: policy, store: s.path + "/a\(n)")
            let aloneSegment = try EntryIndex(path: s.path + "/a\(n)/index.sqlite").entry(id: alone)?.segment
            guidanceMattered = guidanceMattered || aloneSegment != rows[0].segment

            // Another image behind the same token ids never gets this image's prefix.
            let other = try ingest(s, try s.question("o\(n).safetensors", question: 1, seed: 5), policy: policy, store: store)
            XCTAssertNotEqual(try index.entry(id: other)?.segment, rows[0].segment, policy)
            XCTAssertEqual(try s.cli.run("verify", "--store", store).status, 0, policy)
        }
        XCTAssertTrue(guidanceMattered, "the fixtures' questions guide some reduction differently")
    }

    /// The same keys, values and ids declared as another layout (a 2×8 grid where the first
    /// question said 4×4) are another prefix to a guided reduction, which windows and budgets by
    /// the layout: the later question stores its own segment, and one declaring the first
    /// question's layout names the first's.
    func testAGuidedSegmentIsNotNamedByAPrefixDeclaredAsAnotherLayout() throws {
        let s = try Scratch()
        let policy = "airmerge50:evict=0:dense=0"
        let first = try ingest(s, try s.question("q1.safetensors", question: 1), policy: policy)
        let segment = try XCTUnwrap(try record(s, first).segment)
        let regridded = try ingest(s, try s.question("q2.safetensors", question: 2, grid: (2, 8)), policy: policy)
        let own = try XCTUnwrap(try record(s, regridded).segment)
        XCTAssertNotEqual(own, segment)
        let same = try ingest(s, try s.question("q3.safetensors", question: 3), policy: policy)
        XCTAssertEqual(try record(s, same).segment, segment)
        XCTAssertEqual(try s.cli.run("verify").status, 0)
    }

    /// Two settings that differ are two policies, however close: a policy's name spells its
    /// settings exactly, and a later question under `near=1` never names the segment a
    /// question under `near=0.9996` guided.
    func testAGuidedSegmentIsNotNamedUnderASettingThatDiffersInTheFourthDecimal() throws {
        let s = try Scratch()
        let fine = "airmerge50:evict=0:dense=0:near=0.9996", coarse = "airmerge50:evict=0:dense=0:near=1"
        let spelled = try Policy(parsing: fine).name
        XCTAssertTrue(spelled.contains("near=0.9996"), spelled)
        let first = try ingest(s, try s.question("q1.safetensors", question: 1), policy: fine)
        let segment = try XCTUnwrap(try record(s, first).segment)
        let other = try ingest(s, try s.question("q2.safetensors", question: 2), policy: coarse)
        XCTAssertNotEqual(try record(s, other).segment, segment)
        XCTAssertNotEqual(try record(s, other).policy, try record(s, first).policy)
        let same = try ingest(s, try s.question("q3.safetensors", question: 3), policy: fine)
        XCTAssertEqual(try record(s, same).segment, segment)

        // The question that guided the prefix removed, `show` says so.
        XCTAssertEqual(try s.cli.run("rm", first).status, 0)
        let shown = try s.cli.run("show", same).stdout
        XCTAssertTrue(shown.contains("entry \(first.prefix(16)) (since removed) guided"), shown)
        // Re-packed, the entry is stored whole and no longer names a guided prefix.
        XCTAssertEqual(try s.cli.run("repack", "--policy", "none+zstd19", same).status, 0)
        let repacked = try record(s, same)
        XCTAssertNil(repacked.segment)
        XCTAssertFalse(repacked.compression.contains("prefix_source"), repacked.compression)
        XCTAssertFalse(repacked.compression.contains("guided_by"), repacked.compression)
    }

    /// A damaged guided segment is never named by a later question: it stores its own.
    func testADamagedGuidedSegmentIsNotReused() throws {
        let s = try Scratch()
        let policy = "aircache50:dense=0"
        let first = try ingest(s, try s.question("q1.safetensors", question: 1), policy: policy)
        let segment = try XCTUnwrap(try record(s, first).segment)
        let path = s.path + "/store/blobs/\(segment.prefix(2))/\(segment).kvpack"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        let second = try ingest(s, try s.question("q2.safetensors", question: 2), policy: policy)
        let own = try XCTUnwrap(try record(s, second).segment)
        XCTAssertNotEqual(own, segment)
        let r = try s.cli.run(["fetch", second, "-o", s.path + "/second.safetensors"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertNotEqual(try s.cli.run("verify").status, 0, "the damaged segment is still reported")
    }

    /// A guided segment that is gone (a restored index naming a removed blob) is never named by
    /// a later question: it reduces and stores its own.
    func testAMissingGuidedSegmentIsNotReused() throws {
        let s = try Scratch()
        let policy = "airmerge50:evict=0:dense=0"
        let first = try ingest(s, try s.question("q1.safetensors", question: 1), policy: policy)
        let segment = try XCTUnwrap(try record(s, first).segment)
        try FileManager.default.removeItem(atPath: s.path + "/store/blobs/\(segment.prefix(2))/\(segment).kvpack")
        let second = try ingest(s, try s.question("q2.safetensors", question: 2), policy: policy)
        let own = try XCTUnwrap(try record(s, second).segment)
        XCTAssertNotEqual(own, segment)
        let r = try s.cli.run(["fetch", second, "-o", s.path + "/second.safetensors"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // A third question names the second's segment, the one that is there.
        let third = try ingest(s, try s.question("q3.safetensors", question: 3), policy: policy)
        XCTAssertEqual(try record(s, third).segment, own)
    }

    /// A reduction whose vision entries continue after the prompt is stored whole.
    func testASplitReductionIsStoredWhole() throws {
        let s = try Scratch()
        // An image after the prompt: the reduction budgets over both sides of the seam.
        let spans: [Span] = [.text(0, 4, role: .system), .text(4, 8, role: .prompt),
                             .image(8, rows: 2, cols: 2, source: "sha256:" + String(repeating: "cd", count: 32))]
        var b = KVSnapBuilder(metadata: SnapshotMetadata(model: "test/model", spans: spans, key: "late", nextPosition: 12))
        for i in 0..<2 {
            b.add("layers.\(i).key", dtype: .f16, shape: [2, 12, 16], floats: (0..<384).map { Float(sin(Double($0 + i))) })
            b.add("layers.\(i).value", dtype: .f16, shape: [2, 12, 16], floats: (0..<384).map { Float(cos(Double($0 + i))) })
        }
        b.addInputIDs((0..<12).map { Int64(100 + $0) })
        let late = s.path + "/late.safetensors"
        try Data(b.bytes()).write(to: URL(fileURLWithPath: late))
        XCTAssertNil(try record(s, try ingest(s, late, policy: "airmerge50:evict=0:guide=none")).segment)
        let int8 = try ingest(s, late, policy: "int8", store: s.path + "/int8")
        XCTAssertNotNil(try EntryIndex(path: s.path + "/int8/index.sqlite").entry(id: int8)?.segment, "a quantization alone still segments")
    }

    /// `rm` keeps a segment while another entry names it and collects it with the last.
    func testRemovingEntriesCollectsTheSegmentWithTheLast() throws {
        let s = try Scratch()
        let ids = try (1...2).map { try ingest(s, try s.question("q\($0).safetensors", question: $0)) }
        let segment = try XCTUnwrap(try record(s, ids[0]).segment)
        let store = try StoreRoot(path: s.path + "/store")
        XCTAssertEqual(try s.cli.run("rm", ids[0]).status, 0)
        XCTAssertNotNil(try store.blobs.attributes(segment), "still named by the second entry")
        let fetched = try s.cli.run("fetch", ids[1], "-o", "-")
        XCTAssertEqual(fetched.status, 0, fetched.stderr)
        XCTAssertEqual(try s.cli.run("rm", ids[1]).status, 0)
        XCTAssertNil(try store.blobs.attributes(segment))
        XCTAssertEqual(blobFiles(s.path + "/store"), [])
        XCTAssertEqual(try store.index.doomed().count, 0)
    }

    /// A damaged segment is damage to every entry that names it: verify says so for each,
    /// fetch refuses, and nothing is served.
    func testADamagedSegmentIsReportedForEveryEntryAndNeverServed() throws {
        let s = try Scratch()
        let ids = try (1...2).map { try ingest(s, try s.question("q\($0).safetensors", question: $0)) }
        let segment = try XCTUnwrap(try record(s, ids[0]).segment)
        let path = try StoreRoot(path: s.path + "/store").blobs.readablePath(segment)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[40] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: path))
        let verify = try s.cli.run("verify")
        XCTAssertNotEqual(verify.status, 0)
        for id in ids {
            let line = verify.stdout.split(separator: "\n").first { $0.hasPrefix("FAIL \(id)") }
            XCTAssertTrue(line?.contains(segment) ?? false, verify.stdout)
        }
        let fetch = try s.cli.run("fetch", ids[1], "-o", s.path + "/out.safetensors")
        XCTAssertEqual(fetch.status, 3, fetch.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: s.path + "/out.safetensors"))
        try FileManager.default.removeItem(atPath: path)
        let missing = try s.cli.run("fetch", ids[0], "-o", "-")
        XCTAssertEqual(missing.status, 3)
        XCTAssertTrue(missing.stderr.contains("segment \(segment) of entry"), missing.stderr)
    }

    /// "Already stored" lets the daemon delete its input, so it is said only of an entry whose
    /// blobs hold what their rows name: a damaged part or segment is stored again from the
    /// input (the segment repaired for every entry naming it), never reported as stored.
    func testIngestingAgainRestoresADamagedEntryInsteadOfCallingItStored() throws {
        let s = try Scratch()
        let inputs = try (1...2).map { try s.question("q\($0).safetensors", question: $0) }
        let ids = try inputs.map { try ingest(s, $0, policy: "int8") }
        let root = try StoreRoot(path: s.path + "/store")
        for damaged in ["part", "segment"] {
            let row = try record(s, ids[0])
            let path = try root.blobs.readablePath(damaged == "part" ? row.blob : try XCTUnwrap(row.segment))
            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            bytes[bytes.count / 2] ^= 0x40
            try FileManager.default.removeItem(atPath: path)
            try bytes.write(to: URL(fileURLWithPath: path))
            XCTAssertNotEqual(try s.cli.run("verify").status, 0, damaged)
            let again = try s.cli.run("ingest", "--json", "--policy", "int8", inputs[0])
            XCTAssertEqual(again.status, 0, again.stderr)
            let answer = try JSONSerialization.jsonObject(with: again.stdoutBytes) as! [[String: Any]]
            XCTAssertEqual(answer.first?["already_stored"] as? Bool, false, "\(damaged): stored again, not called stored")
            let verify = try s.cli.run("verify")
            XCTAssertEqual(verify.status, 0, "\(damaged): \(verify.stdout)")
            for id in ids {
                XCTAssertEqual(try s.cli.run("fetch", id, "-o", s.path + "/out.safetensors").status, 0, "\(damaged): \(id)")
            }
            let stored = try s.cli.run("ingest", "--json", "--policy", "int8", inputs[1])
            let second = try JSONSerialization.jsonObject(with: stored.stdoutBytes) as! [[String: Any]]
            XCTAssertEqual(second.first?["already_stored"] as? Bool, true, "\(damaged): the intact entry is stored")
        }
    }

    /// The orphan rule with segments: a lost index is rebuilt with its segment references,
    /// an entry's part without its segment is kept, and a segment no entry names is deleted by
    /// compaction after the grace period.
    func testRepairAndCompactionSettleSegmentsByTheOrphanRule() throws {
        let s = try Scratch()
        let ids = try (1...2).map { try ingest(s, try s.question("q\($0).safetensors", question: $0)) }
        let segment = try XCTUnwrap(try record(s, ids[0]).segment)
        let before = try s.cli.run("fetch", ids[0], "-o", "-").stdoutBytes
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: s.path + "/store/index.sqlite" + suffix) }
        let repair = try s.cli.run("repair")
        XCTAssertEqual(repair.status, 0, repair.stdout + repair.stderr)
        XCTAssertEqual(try record(s, ids[0]).segment, segment)
        XCTAssertEqual(try s.cli.run("fetch", ids[0], "-o", "-").stdoutBytes, before)
        XCTAssertEqual(try s.cli.run("verify").status, 0)

        // Rows gone, the first entry's part gone: the second part is adopted with its
        // segment, which stays named.
        let store = try StoreRoot(path: s.path + "/store")
        let first = try record(s, ids[0]).blob
        try store.index.db.execute("DELETE FROM entries")
        try FileManager.default.removeItem(atPath: try store.blobs.readablePath(first))
        let compact = try s.cli.run("compact", "--grace-seconds", "0")
        XCTAssertEqual(compact.status, 0, compact.stdout + compact.stderr)
        XCTAssertNotNil(try store.blobs.attributes(segment))
        XCTAssertEqual(try store.index.all().map(\.id), [ids[1]])
        XCTAssertEqual(try store.index.all().first?.segment, segment)

        // Nothing names it any more: deleted, since it holds no entry by itself.
        let part = try XCTUnwrap(try store.index.entry(id: ids[1])).blob
        try store.index.db.execute("DELETE FROM entries")
        try FileManager.default.removeItem(atPath: try store.blobs.readablePath(part))
        let reported = try s.cli.run("repair", "--dry-run")
        XCTAssertTrue(reported.stdout.contains("segment"), reported.stdout)
        XCTAssertEqual(try s.cli.run("compact", "--grace-seconds", "0").status, 0)
        XCTAssertNil(try store.blobs.attributes(segment))
    }

    /// A store written before segments (no migration 0005) opens, fetches bit-identically, and
    /// segments what it ingests from then on.
    func testAStoreFromBeforeSegmentsMigratesAndFetchesBitIdentically() throws {
        let s = try Scratch()
        let id = try ingest(s, try s.question("a.safetensors", question: 1, ids: false), policy: "lightkv+int8")
        let before = try s.cli.run("fetch", id, "-o", "-").stdoutBytes
        try Database(path: s.path + "/store/index.sqlite").execute("""
            DROP INDEX entries_segment; ALTER TABLE entries DROP COLUMN segment;
            ALTER TABLE entries DROP COLUMN segment_bytes; DELETE FROM migrations WHERE name = '0005_segments'
            """)
        XCTAssertEqual(try s.cli.run("fetch", id, "-o", "-").stdoutBytes, before, "migrated on open, fetched as before")
        let later = try ingest(s, try s.question("b.safetensors", question: 2), policy: "int8")
        XCTAssertNotNil(try record(s, later).segment)
        XCTAssertEqual(try s.cli.run("verify").status, 0)
    }

    /// `migrate` copies the segment with the entries, and a re-pack stores the entry whole.
    func testMigrateCopiesSegmentsAndRepackStoresWhole() throws {
        let s = try Scratch()
        let ids = try (1...2).map { try ingest(s, try s.question("q\($0).safetensors", question: $0), policy: "int8") }
        let before = try ids.map { try s.cli.run("fetch", $0, "-o", "-").stdoutBytes }
        let copy = s.path + "/copy"
        let migrate = try s.cli.run("migrate", "--from", s.path + "/store", "--to", copy)
        XCTAssertEqual(migrate.status, 0, migrate.stdout + migrate.stderr)
        XCTAssertEqual(blobFiles(copy).count, 3)
        for (id, bytes) in zip(ids, before) {
            XCTAssertEqual(try s.cli.run("fetch", "--store", copy, id, "-o", "-").stdoutBytes, bytes)
        }
        XCTAssertEqual(try s.cli.run("verify", "--store", copy).status, 0)

        let segment = try XCTUnwrap(try record(s, ids[0]).segment)
        for id in ids { XCTAssertEqual(try s.cli.run("repack", id, "--policy", "int4g128m0t0r1").status, 0) }
        XCTAssertNil(try record(s, ids[0]).segment)
        XCTAssertNil(try StoreRoot(path: s.path + "/store").blobs.attributes(segment), "collected with the last entry naming it")
        XCTAssertEqual(try s.cli.run("verify").status, 0)
    }
}
