import ArgumentParser
import Foundation
import LightKV
import Pipeline
import Store

struct FetchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fetch", abstract: "Write a stored entry back as a kvsnap file (positions and sizes included).")

    @OptionGroup var location: StoreLocation

    @Argument(help: "Entry id, or any unique prefix of it (a producer key with --key).")
    var id: String

    @Flag(name: .long, help: "Look the entry up by its kvsnap.key.")
    var key = false

    @Option(name: .shortAndLong, help: "Output file, or - for standard output.")
    var output: String?

    @Option(name: .long, help: "Dtype of keys and values: f16, bf16 or f32.")
    var dtype = "f16"

    @Flag(name: .long, help: "Write the stored kvpack file itself (docs/FORMAT.md); a segmented entry's segment goes beside it as SEGMENT.kvpack.")
    var raw = false

    @Flag(name: .long, help: "Repeat each merged entry at every member's position with size 1, for engines without a log(size) logit bias.")
    var expand = false

    @Flag(name: .long, help: "Write the shareable prefix alone (positions before the first prompt span: system text and media), to ask a new question of it.")
    var prefix = false

    func validate() throws {
        guard DType(userName: dtype) != nil else { throw ValidationError("--dtype \(dtype): expected f16, bf16 or f32") }
        if raw && expand { throw ValidationError("--raw and --expand exclude each other: --raw writes the pack as stored") }
        if raw && prefix { throw ValidationError("--raw and --prefix exclude each other: --raw writes the pack as stored") }
        if output == nil && Terminal.isInteractive {
            throw ValidationError("refusing to write binary data to a terminal: give -o FILE (or -o - to force)")
        }
    }

    func run() throws {
        // Stopped mid-fetch (SIGTERM, SIGINT), the unpublished output goes with the process.
        let signals = TemporaryOutputs.removedOnSignal()
        defer { withExtendedLifetime(signals) {} }
        let root = try location.openForReading()
        let record = try root.index.resolve(id, key: key)
        if let output { try OutputPlace.check(output, store: root) }
        if raw { try root.noting(damageOf: record) { try Fetcher(root: root).fetchRaw(record, to: output) }; return }
        let sink = try OutputSink(path: output)
        do {
            try root.noting(damageOf: record) {
                try Fetcher(root: root).fetch(record, options: FetchOptions(dtype: DType(userName: dtype)!, raw: raw, expand: expand, prefix: prefix), to: sink)
            }
        } catch {
            sink.abandon()
            throw error
        }
    }
}
