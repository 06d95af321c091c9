import Foundation
import Store

/// How `kvstore serve` runs: where it listens, who may do what, how large an upload may be,
/// how long a client may take.
public struct ServerConfiguration: Sendable {
    /// The store, for logs and the web page: a root directory, or a shared store's description.
    public var storePath: String
    /// Opens a handle on the store (the pool holds one per concurrent request).
    public var openStore: @Sendable () throws -> StoreRoot
    /// Host to bind (an IPv4 or IPv6 literal, or `localhost`).
    public var host: String
    /// Port to bind; 0 picks a free one (printed on start).
    public var port: Int
    /// Bearer tokens and their scopes; nil means open access, which only loopback allows.
    public var tokens: TokenTable?
    /// Largest upload body accepted, in bytes.
    public var maxUpload: Int
    /// Where named policies come from (`--policies FILE`), if anywhere.
    public var policyFile: String?
    /// Timeouts and the connection limit.
    public var connections = ConnectionLimits()
    /// A line per request in the log (`--no-access-log` turns it off).
    public var accessLog = true
    /// Serve HTTPS with this certificate and key (`--tls-cert`, `--tls-key`); nil: plain HTTP.
    public var tls: TLSFiles?

    /// The PEM files of `--tls-cert` (the certificate chain, leaf first) and `--tls-key`.
    public struct TLSFiles: Sendable {
        public var certificateChain: String
        public var privateKey: String
        public init(certificateChain: String, privateKey: String) { self.certificateChain = certificateChain; self.privateKey = privateKey }
    }

    /// Said at start when tokens would cross the network in clear text: a non-loopback
    /// address with tokens and no TLS (right only behind a reverse proxy on the same host
    /// that terminates TLS, docs/design/serve.md).
    public var plaintextWarning: String? {
        let address = ListenAddress(host: host, port: port)
        guard tokens != nil, tls == nil, !address.isLoopback else { return nil }
        return "warning: serving \(address) over plain HTTP: tokens cross the network in clear text. Use --tls-cert and --tls-key, "
            + "or bind a loopback address behind a reverse proxy that terminates TLS (docs/design/serve.md)"
    }

    public init(storePath: String, host: String = "127.0.0.1", port: Int = 8750, tokens: TokenTable? = nil,
                maxUpload: Int = 4 << 30, policyFile: String? = nil, openStore: (@Sendable () throws -> StoreRoot)? = nil) {
        self.openStore = openStore ?? { try StoreRoot(path: storePath) }
        self.storePath = storePath; self.host = host; self.port = port; self.tokens = tokens
        self.maxUpload = maxUpload; self.policyFile = policyFile
    }
}
