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

    public init(storePath: String, host: String = "127.0.0.1", port: Int = 8750, tokens: TokenTable? = nil,
                maxUpload: Int = 4 << 30, policyFile: String? = nil, openStore: (@Sendable () throws -> StoreRoot)? = nil) {
        self.openStore = openStore ?? { try StoreRoot(path: storePath) }
        self.storePath = storePath; self.host = host; self.port = port; self.tokens = tokens
        self.maxUpload = maxUpload; self.policyFile = policyFile
    }
}
