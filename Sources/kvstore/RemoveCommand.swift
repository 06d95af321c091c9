import ArgumentParser
import Foundation
import Store

struct RemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove entries.")

    @OptionGroup var options: StoreOptions

    @Argument(help: "Entry ids or unique prefixes.")
    var ids: [String]

    func run() throws {
        let root = try options.open()
        // Resolve every name first, so a typo removes nothing.
        let records = try ids.map { try root.index.resolve($0) }
        for r in records {
            if try root.removeEntry(r.id) != nil {
                if !options.json { print("removed \(r.id)") }
            }
        }
        if options.json { Terminal.json(records.map(\.id)) }
    }
}

struct PinCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pin", abstract: "Pin entries so compaction never evicts or re-packs them (--off to unpin).")

    @OptionGroup var options: StoreOptions

    @Flag(name: .long, help: "Unpin instead.")
    var off = false

    @Argument(help: "Entry ids or unique prefixes.")
    var ids: [String]

    func run() throws {
        let root = try options.open()
        let records = try ids.map { try root.index.resolve($0) }
        for r in records {
            try root.index.setPinned(r.id, !off)
            if !options.json { print("\(off ? "unpinned" : "pinned") \(r.id)") }
        }
        if options.json { Terminal.json(records.map(\.id)) }
    }
}
