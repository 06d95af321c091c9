import ArgumentParser
import Foundation
import LightKV
import Store

/// `kvstore match`: the lookup a serving node makes before prefill.
struct MatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "match",
        abstract: "Find the longest stored prefix for a request's token ids (exit 2 if none).",
        discussion: """
        A stored entry's shareable prefix is every position before its first prompt span \
        (KVSNAP.md); it matches a request of the same model whose input_ids start with the same \
        ids and whose every image or video inside the prefix is named, in order, by the same \
        source the entry stored (--source: token ids do not tell images apart, so a prefix \
        holding media the request does not name, or media stored without a source, is no match). \
        Prints the entry id and the prefix length: `kvstore fetch ID --prefix` writes the cache \
        to prefill on top of. Entries stored without input_ids are never matched.
        """)

    @OptionGroup var options: StoreOptions

    @Option(name: .long, help: "The model (kvsnap.model) the request runs.")
    var model: String

    @Option(name: .long, help: "The request's token ids: a file holding a JSON array of integers, or - for standard input.")
    var ids: String

    @Option(name: .long, help: "A media source of the request (e.g. sha256:<hex>), in the order its images and videos appear; repeat for each.")
    var source: [String] = []

    func run() throws {
        let tokens = try Self.readIDs(ids)
        let root = try options.openForReading()
        guard let match = try root.index.longestPrefix(model: model, ids: tokens, sources: source) else {
            throw StoreError.notFound("stored prefix of model \(model) for these \(tokens.count) ids")
        }
        if options.json { Terminal.json(match); return }
        let evidence = match.sourcesChecked > 0 ? "input_ids and \(match.sourcesChecked) media source\(match.sourcesChecked == 1 ? "" : "s")" : "input_ids: a prefix of text alone"
        print("\(match.id)  prefix of \(match.length) tokens (matched by \(evidence)); prefill from token \(match.length)")
    }

    /// A JSON array of integers from a file or standard input.
    static func readIDs(_ path: String) throws -> [Int64] {
        let data: Data
        if path == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let d = FileManager.default.contents(atPath: path) else {
                throw ValidationError("--ids \(path): cannot be read")
            }
            data = d
        }
        let where_ = path == "-" ? "(standard input)" : path
        guard let tokens = try? JSONDecoder().decode([Int64].self, from: data) else {
            throw ValidationError("--ids \(where_): not a JSON array of integer token ids")
        }
        if let i = tokens.firstIndex(where: { $0 < 0 }) {
            throw ValidationError("--ids \(where_): element \(i) (\(tokens[i])) is negative")
        }
        return tokens
    }
}
