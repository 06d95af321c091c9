import ArgumentParser
import CLinux
import Foundation
import Pipeline
import Server
import SharedStore
import Store

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Serve the store over HTTP (API in docs/openapi.yaml, a web page at /).",
        discussion: "SIGTERM or SIGINT: stop accepting connections, finish requests in flight, exit 0.")

    @OptionGroup var location: StoreLocation

    @Option(name: .long, help: "HOST:PORT to listen on (port 0: any free port, printed on start).")
    var listen = "127.0.0.1:8750"

    @Option(name: .long, help: "Bearer tokens, one `TOKEN SCOPE` (read or write) per line; required off loopback.")
    var tokens: String?

    @Option(name: .long, help: "Largest upload accepted, e.g. 2GB or 500MB.")
    var maxUpload = "4GB"

    @OptionGroup var policyFile: PolicyFileOption

    func run() throws {
        let address = try ListenAddress(parsing: listen)
        guard let limit = ByteSize(parsing: maxUpload)?.bytes, limit > 0 else {
            throw ValidationError("--max-upload \(maxUpload): expected a size such as 500MB or 4GB")
        }
        _ = try policyFile.file()  // a bad policy file fails now, not on the first upload
        // Many streams at once for hours: give memory back when a stream ends (Main's
        // setting keeps it, which suits one fetch and exit).
        kvstore_return_freed_memory()
        let store = try location.spec()
        let server = try KVServer(configuration: ServerConfiguration(
            storePath: store.description, host: address.host, port: address.port,
            tokens: try tokens.map { try TokenTable.load(path: $0) }, maxUpload: limit, policyFile: policyFile.policies,
            openStore: { try store.open() }))
        try server.runBlocking { bound in
            print("listening on http://\(bound)")
            fflush(stdout)
        }
    }
}
