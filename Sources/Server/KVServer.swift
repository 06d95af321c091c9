import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import Logging
import Pipeline
import ServiceLifecycle
import Store

/// `kvstore serve`: the store over HTTP (docs/openapi.yaml).
///
///     try KVServer(configuration: .init(storePath: "/var/lib/kvstore")).run()
///
/// SIGTERM or SIGINT stops accepting connections, lets requests in flight (a stream
/// included) finish, and returns.
public struct KVServer: Sendable {
    public let configuration: ServerConfiguration
    /// Connections held at once: `--max-connections`, or as many as the descriptor limit
    /// allows (at most `ConnectionLimits.defaultMaxConnections`).
    public let maxConnections: Int
    /// What the setup let pass but the operator should know (printed by the CLI).
    public let warnings: [String]
    /// From `configuration.tls`, loaded (and checked) at once.
    let tlsConfiguration: TLSConfiguration?

    /// Raises the soft descriptor limit to the hard one, and refuses a `--max-connections` it
    /// cannot serve.
    public init(configuration: ServerConfiguration) throws(ServeSetupError) {
        let address = ListenAddress(host: configuration.host, port: configuration.port)
        if configuration.tokens == nil && !address.isLoopback { throw .openNonLoopback(address) }
        self.configuration = configuration
        if let tls = configuration.tls { tlsConfiguration = try Self.load(tls) } else { tlsConfiguration = nil }
        let descriptors = DescriptorBudget.raiseLimit()
        let fits = DescriptorBudget.connections(within: descriptors)
        if let asked = configuration.connections.maxConnections {
            if asked > fits { throw .tooManyConnections(asked: asked, descriptors: descriptors, fits: fits) }
            maxConnections = asked
            warnings = []
        } else if fits < ConnectionLimits.defaultMaxConnections {
            maxConnections = max(1, fits)
            warnings = ["warning: the descriptor limit (\(descriptors), `ulimit -n`, systemd's LimitNOFILE) allows \(maxConnections) connections, "
                        + "not \(ConnectionLimits.defaultMaxConnections): raise it for more"]
        } else {
            maxConnections = ConnectionLimits.defaultMaxConnections
            warnings = []
        }
    }

    /// Serves until a signal asks it to stop; `ready` gets the address actually bound
    /// (the port is chosen by the system when 0 was asked for).
    public func run(ready: @escaping @Sendable (ListenAddress) -> Void = { _ in }) async throws {
        var logger = Logger(label: "kvstore.serve")
        logger.logLevel = .info
        let policies = try configuration.policyFile.map { try PolicyFile.load(path: $0) }
        let responder = StoreResponder(configuration: configuration, pool: try StorePool(open: configuration.openStore),
                                       metrics: ServerMetrics(), logger: logger, policies: policies,
                                       accessLog: configuration.accessLog ? AccessLog(logger: logger) : nil)
        let host = configuration.host
        let table = ConnectionTable(limit: maxConnections)
        let http = HTTPServerBuilder.kvstore(continuing: { responder.acceptsBody($0) }, limits: configuration.connections,
                                             table: table)
        let app = Application(
            responder: responder,
            server: try tlsConfiguration.map { try HTTPServerBuilder.tls(http, tlsConfiguration: $0) } ?? http,
            configuration: .init(address: .hostname(host, port: configuration.port), serverName: "kvstore"),
            onServerRunning: { channel in ready(ListenAddress(host: host, port: channel.localAddress?.port ?? 0)) },
            logger: logger)
        try await app.runService()
        // Requests are over; the bytes of the last ones may not be: wait for their connections.
        if !(await table.drained(within: 30)) { logger.warning("stopped with connections still open after 30 s") }
    }

    /// The server's TLS settings from its PEM files, naming the file that cannot be used.
    static func load(_ files: ServerConfiguration.TLSFiles) throws(ServeSetupError) -> TLSConfiguration {
        let chain: [NIOSSLCertificate], key: NIOSSLPrivateKey
        do { chain = try NIOSSLCertificate.fromPEMFile(files.certificateChain) } catch {
            throw .badTLS(path: files.certificateChain, problem: "--tls-cert: not a readable PEM certificate (\(error))")
        }
        guard !chain.isEmpty else { throw .badTLS(path: files.certificateChain, problem: "--tls-cert: holds no certificate") }
        do { key = try NIOSSLPrivateKey(file: files.privateKey, format: .pem) } catch {
            throw .badTLS(path: files.privateKey, problem: "--tls-key: not a readable PEM private key (\(error))")
        }
        return TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
    }

    /// `run` from synchronous code (the CLI), blocking until the server has stopped.
    public func runBlocking(ready: @escaping @Sendable (ListenAddress) -> Void = { _ in }) throws {
        let done = DispatchSemaphore(value: 0)
        let outcome = OutcomeBox()
        Task.detached {
            do { try await self.run(ready: ready) } catch { outcome.error = error }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw error }
    }
}

private final class OutcomeBox: @unchecked Sendable {
    var error: Error?
}
