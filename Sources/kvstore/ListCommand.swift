import ArgumentParser
import Foundation
import Store

struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List stored entries.")

    @OptionGroup var options: StoreOptions

    @Option(name: .long, help: "Only entries holding a span with this source (e.g. sha256:<hex>).")
    var source: String?

    func run() throws {
        let root = try options.open()
        var records = try root.index.all()
        if let source {
            let ids = Set(try root.index.entries(withSource: source))
            records = records.filter { ids.contains($0.id) }
        }
        if options.json { Terminal.json(records); return }
        Terminal.table(
            ["ID", "MODEL", "POLICY", "LAYERS", "IN", "OUT", "RATIO", "CREATED", "FETCHES", "PIN"],
            records.map { r in
                [String(r.id.prefix(12)), r.model, r.policy, String(r.layers), Terminal.bytes(r.bytesIn),
                 Terminal.bytes(r.bytesOut), String(format: "%.2f×", r.ratio), Terminal.date(r.createdAt),
                 String(r.accessCount), r.pinned ? "yes" : ""]
            })
    }
}
