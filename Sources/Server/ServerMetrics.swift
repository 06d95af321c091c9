import Foundation
import Prometheus
import Store

/// What `/metrics` reports (Prometheus text): requests by route, method and status, bytes
/// sent, fetch and ingest latency, and the store's size, read from the index at each scrape.
final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let fetchSeconds: DurationHistogram
    private let ingestSeconds: DurationHistogram
    private let entries: Gauge
    private let bytesIn: Gauge
    private let bytesStored: Gauge

    private static let requests = MetricNameDescriptor(
        namespace: "kvstore", subsystem: "http", metricName: "requests", unitName: "total", helpText: "HTTP requests answered")
    private static let bytes = MetricNameDescriptor(
        namespace: "kvstore", subsystem: "http", metricName: "response_bytes", unitName: "total", helpText: "Body bytes sent")

    init() {
        let latency: [Duration] = [.milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                                   .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30)]
        func name(_ n: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "kvstore", metricName: n, unitName: unit, helpText: help)
        }
        fetchSeconds = registry.makeDurationHistogram(
            descriptor: name("fetch_duration", "seconds", "Time from request to the last byte of a kvsnap or pack body"), buckets: latency)
        ingestSeconds = registry.makeDurationHistogram(
            descriptor: name("ingest_duration", "seconds", "Time from the last byte of an upload to its entry being stored"), buckets: latency)
        entries = registry.makeGauge(descriptor: name("store_entries", "", "Entries in the store"))
        bytesIn = registry.makeGauge(descriptor: name("store_bytes_in", "", "Bytes of the snapshots as ingested"))
        bytesStored = registry.makeGauge(descriptor: name("store_bytes_stored", "", "Bytes of the stored packs"))
    }

    func request(route: String, method: String, status: Int) {
        registry.makeCounter(descriptor: Self.requests, labels: [("route", route), ("method", method), ("status", String(status))]).increment()
    }

    func bytesOut(route: String, _ n: Int) {
        registry.makeCounter(descriptor: Self.bytes, labels: [("route", route)]).increment(by: Int64(n))
    }

    func fetched(_ d: Duration) { fetchSeconds.record(d) }
    func ingested(_ d: Duration) { ingestSeconds.record(d) }

    /// The exposition, with the store's totals read now.
    func render(root: StoreRoot) throws -> [UInt8] {
        let row = try root.index.db.query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(bytes_in), 0) AS bin, COALESCE(SUM(bytes_out), 0) AS bout FROM entries").first
        entries.set(Double(row?.int("n") ?? 0))
        bytesIn.set(Double(row?.int("bin") ?? 0))
        bytesStored.set(Double(row?.int("bout") ?? 0))
        return registry.emitToBuffer()
    }
}
