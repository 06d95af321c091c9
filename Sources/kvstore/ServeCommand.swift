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

    @Option(name: .long, help: "Seconds a connection may wait between requests (or before its first).")
    var idleTimeout: Double = 30

    @Option(name: .long, help: "Seconds a request head may take to arrive, from its first byte.")
    var headerTimeout: Double = 10

    @Option(name: .long, help: "Seconds an upload's body may stall (no byte arriving) before the connection is closed.")
    var bodyTimeout: Double = 30

    @Option(name: .long, help: "Connections held at once (default: as many as the descriptor limit allows, at most 1000); past it the longest-idle one is closed.")
    var maxConnections: Int?

    @Option(name: .long, help: "Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.")
    var tlsCert: String?

    @Option(name: .long, help: "The PEM private key of --tls-cert.")
    var tlsKey: String?

    @Flag(name: .long, help: "Write no line per request (stores, removals, pins and errors are still logged).")
    var noAccessLog = false

    @OptionGroup var policyFile: PolicyFileOption

    /// The timeouts and connection limit, checked.
    func connectionLimits() throws -> ConnectionLimits {
        var limits = ConnectionLimits()
        for (flag, seconds) in [("--idle-timeout", idleTimeout), ("--header-timeout", headerTimeout), ("--body-timeout", bodyTimeout)] {
            guard seconds.isFinite, seconds > 0, seconds <= 86_400 else {
                throw ValidationError("\(flag) \(seconds): expected seconds, more than 0 and at most 86400")
            }
        }
        limits.idleTimeout = .milliseconds(Int64(idleTimeout * 1000))
        limits.headerTimeout = .milliseconds(Int64(headerTimeout * 1000))
        limits.bodyTimeout = .milliseconds(Int64(bodyTimeout * 1000))
        if let maxConnections, maxConnections < 1 {
            throw ValidationError("--max-connections \(maxConnections): expected at least 1")
        }
        limits.maxConnections = maxConnections
        return limits
    }

    func run() throws {
        let address = try ListenAddress(parsing: listen)
        guard let limit = ByteSize(parsing: maxUpload)?.bytes, limit > 0 else {
            throw ValidationError("--max-upload \(maxUpload): expected a size such as 500MB or 4GB")
        }
        let limits = try connectionLimits()
        _ = try policyFile.file()  // a bad policy file fails now, not on the first upload
        // Many streams at once for hours: give memory back when a stream ends (Main's
        // setting keeps it, which suits one fetch and exit).
        kvstore_return_freed_memory()
        let store = try location.spec()
        let tokenTable = try tokens.map { try TokenTable.load(path: $0) }
        tokenTable?.warnings.forEach { Terminal.error($0) }
        // Only a server that may write creates its store; one with read tokens only serves
        // a store that is there (a mistyped --store creates nothing).
        if let tokenTable, !tokenTable.allowsWriting { try store.requirePresent() }
        var configuration = ServerConfiguration(
            storePath: store.description, host: address.host, port: address.port,
            tokens: tokenTable, maxUpload: limit, policyFile: policyFile.policies,
            openStore: { try store.open() })
        configuration.connections = limits
        configuration.accessLog = !noAccessLog
        switch (tlsCert, tlsKey) {
        case let (cert?, key?): configuration.tls = .init(certificateChain: cert, privateKey: key)
        case (nil, nil): break
        default: throw ValidationError("--tls-cert and --tls-key go together: give both or neither")
        }
        if let warning = configuration.plaintextWarning { Terminal.error(warning) }
        let server = try KVServer(configuration: configuration)
        server.warnings.forEach { Terminal.error($0) }
        let scheme = configuration.tls == nil ? "http" : "https"
        try server.runBlocking { bound in
            print("listening on \(scheme)://\(bound)")
            fflush(stdout)
        }
    }
}
