import ArgumentParser
import Store

/// Options every store command takes.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: "Store root (default: $KVSTORE_HOME, else ~/.kvstore).")
    var store: String?

    @Flag(name: .long, help: "Print JSON for scripts.")
    var json = false

    func open() throws -> StoreRoot { try StoreRoot(path: StoreRoot.defaultPath(store)) }
}
