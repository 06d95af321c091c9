import Foundation
import Hummingbird

/// `/healthz`, `/metrics`, `/openapi.yaml`.
extension StoreResponder {
    func health() async throws -> Response {
        struct Health: Encodable { var status = "ok"; var entries: Int }
        let n = try await pool.run { root in try root.index.count() }
        return try Self.json(Health(entries: n))
    }

    func metricsPage() async throws -> Response {
        let metrics = self.metrics
        let text = try await pool.run { root in try metrics.render(root: root) }
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(bytes: text)))
    }

    /// docs/openapi.yaml, compiled into the binary.
    static func openapi() -> Response {
        Response(status: .ok, headers: [.contentType: "application/yaml"],
                 body: .init(byteBuffer: ByteBuffer(bytes: PackageResources.openapi_yaml)))
    }
}
