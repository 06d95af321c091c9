import ArgumentParser
import Foundation
import Pipeline
import Store

struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show one entry in full.")

    @OptionGroup var options: StoreOptions

    @Argument(help: "Entry id or unique prefix (a producer key with --key).")
    var id: String

    @Flag(name: .long, help: "Look the entry up by its kvsnap.key.")
    var key = false

    func run() throws {
        let root = try options.openForReading()
        let r = try root.index.resolve(id, key: key)
        if options.json { Terminal.json(try EntryDocument.local(r, in: root)); return }
        let sources = try root.index.sources(of: r.id)
        var segment: [(String, String)] = []
        if let name = r.segment {
            let sharers = try root.index.entries(inSegment: name).count
            let record = (try? JSONDecoder().decode([String: String].self, from: Data(r.compression.utf8))) ?? [:]
            var guide = ""
            if let first = record[EntryIndex.guidedByKey] {
                let gone = try first != r.id && root.index.entry(id: first) == nil
                guide = first == r.id ? ", reduced as this entry's question guided"
                    : ", reduced as the question of entry \(first.prefix(16))\(gone ? " (since removed)" : "") guided"
            }
            segment = [("segment", "\(root.blobs.location(name)): the shared prefix\(guide), \(Terminal.bytes(r.segmentBytes ?? 0)), named by \(sharers) entr\(sharers == 1 ? "y" : "ies")")]
        }
        let rows: [(String, String)] = [
            ("id", r.id), ("key", r.producerKey ?? "-"), ("model", r.model),
            ("shape", "\(r.layers) layers × \(r.kvHeads) kv heads × head_dim \(r.headDim) (v \(r.vHeadDim)), seq_len \(r.seqLen), \(r.inputDType)"),
            ("entries kept", "\(r.entriesKept) of \(r.layers * r.seqLen) (\(String(format: "%.1f%%", 100 * Double(r.entriesKept) / Double(max(1, r.layers * r.seqLen)))))"),
            ("policy", r.policy), ("compression", r.compression), ("fidelity", Self.describeFidelity(r.fidelity)),
            ("bytes", "\(Terminal.bytes(r.bytesIn)) in, \(Terminal.bytes(r.bytesOut)) stored"
                + (r.segment == nil ? "" : " beside its \(Terminal.bytes(r.segmentBytes ?? 0)) segment")
                + " (\(String(format: "%.2f×", r.ratio)))"),
            ("blob", root.blobs.location(r.blob)),
        ] + segment + [
            ("created", Terminal.date(r.createdAt)), ("last fetched", r.accessCount > 0 ? Terminal.date(r.lastAccessed) : "never"),
            ("fetches", String(r.accessCount)), ("pinned", r.pinned ? "yes" : "no"),
            ("spans", r.spans), ("sources", sources.isEmpty ? "-" : sources.joined(separator: ", ")),
        ]
        let width = rows.map(\.0.count).max() ?? 0
        for (k, v) in rows { print(k.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + Terminal.oneLine(v)) }
    }

    /// The fidelity recorded at ingest, as a sentence (the JSON is in `show --json`).
    static func describeFidelity(_ json: String?) -> String {
        guard let json else { return "- (not measured: the input had no probe queries, or the policy is exact)" }
        guard let o = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              let prop = o["proportional"] as? [String: Double], let plain = o["plain"] as? [String: Double] else { return json }
        let layers = (o["layers_measured"] as? [Int])?.map(String.init).joined(separator: ",") ?? "?"
        var text = String(format: "attention-output rel. error %.4f with sizes as logit bias (cos %.5f), %.4f without; layers %@",
                          prop["relative_error"] ?? .nan, prop["cosine"] ?? .nan, plain["relative_error"] ?? .nan, layers)
        if let error = o["error"] as? String { text += "; measuring failed: \(error)" }
        return text
    }
}
