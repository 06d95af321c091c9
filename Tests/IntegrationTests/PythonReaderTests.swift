import Foundation
import XCTest

/// What `kvstore fetch` writes is read by Python's `safetensors`, as serving nodes do.
final class PythonReaderTests: XCTestCase {
    func testPythonSafetensorsReadsFetchedFileWithSameTensors() throws {
        let s = try Scratch()
        let input = try s.snapshot("x.safetensors")
        let id = try s.cli.run("ingest", input).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let output = s.path + "/y.safetensors"
        XCTAssertEqual(try s.cli.run("fetch", id, "-o", output).status, 0)
        let script = """
        import json, sys
        import numpy as np
        from safetensors.numpy import load_file
        from safetensors import safe_open
        a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
        for i in range(3):
            for t in ("key", "value"):
                assert np.array_equal(a[f"layers.{i}.{t}"], b[f"layers.{i}.{t}"]), (i, t)
            assert b[f"layers.{i}.positions"].tolist() == list(range(26))
            assert b[f"layers.{i}.sizes"].dtype == np.int32
        meta = safe_open(sys.argv[2], "np").metadata()
        assert meta["kvsnap.seq_len"] == "26", meta
        json.loads(meta["kvsnap.compression"])
        print("ok")
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script, input, output]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "python3 with safetensors and numpy is installed by `make deps`: \(text)")
        XCTAssertEqual(text.trimmingCharacters(in: .whitespacesAndNewlines), "ok")
    }
}
