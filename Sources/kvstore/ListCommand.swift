import ArgumentParser
import Foundation
import Pipeline
import Store

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls", abstract: "List stored entries, oldest first (the filters of GET /v1/entries).")

    @OptionGroup var options: StoreOptions

    @Option(name: .long, help: "Only entries holding a span with this source (e.g. sha256:<hex>).")
    var source: String?

    @Option(name: .long, help: "Only entries of this model.")
    var model: String?

    @Option(name: .long, help: "Only entries with this producer key (kvsnap.key).")
    var key: String?

    @Option(name: .long, help: "At most this many entries.")
    var limit: Int?

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit \(limit): expected at least 1") }
    }

    func run() throws {
        let root = try options.openForReading()
        var records = try root.index.all()
        if let source {
            let ids = Set(try root.index.entries(withSource: source))
            records = records.filter { ids.contains($0.id) }
        }
        if let model { records = records.filter { $0.model == model } }
        if let key { records = records.filter { $0.producerKey == key } }
        if let limit { records = Array(records.prefix(limit)) }
        if options.json { Terminal.json(try records.map { try EntryDocument.local($0, in: root) }); return }
        Terminal.table(
            ["ID", "MODEL", "POLICY", "LAYERS", "IN", "OUT", "RATIO", "CREATED", "FETCHES", "PIN"],
            records.map { r in
                [String(r.id.prefix(12)), r.model, r.policy, String(r.layers), Terminal.bytes(r.bytesIn),
                 Terminal.bytes(r.bytesOut), String(format: "%.2f×", r.ratio), Terminal.date(r.createdAt),
                 String(r.accessCount), r.pinned ? "yes" : ""]
            })
    }
}
