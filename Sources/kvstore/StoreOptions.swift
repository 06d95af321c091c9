import ArgumentParser
import LightKV
import Pipeline
import Store

/// Options every store command takes.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: "Store root (default: $KVSTORE_HOME, else ~/.kvstore).")
    var store: String?

    @Flag(name: .long, help: "Print JSON for scripts.")
    var json = false

    func open() throws -> StoreRoot { try StoreRoot(path: StoreRoot.defaultPath(store)) }
}

/// `--policies FILE`: named policies (docs/DESIGN.md, "Policy files") that `--policy` and
/// `--cold-policy` may name.
struct PolicyFileOption: ParsableArguments {
    @Option(name: .long, help: "A policy file whose names --policy may use (docs/DESIGN.md, \"Policy files\").")
    var policies: String?

    func file() throws -> PolicyFile? {
        guard let policies else { return nil }
        return try PolicyFile.load(path: policies)
    }

    /// `text` as a name from the file, or as a policy spelling.
    func resolve(_ text: String) throws -> Policy {
        do { return try Policy.resolve(text, in: try file()) } catch let e as PolicyError { throw StoreError.badPolicy(e) }
    }
}
