import Foundation
import Prometheus
import Synchronization
import Store

/// What `/metrics` reports (Prometheus text): requests by route, method and status, bytes
/// sent, request, fetch and ingest latency (by route and by the entry's policy), the store's
/// size, read from the index at each scrape, the `process_*` set every exporter has, and
/// `kvstore_build_info`.
final class ServerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let entries: Gauge
    private let bytesIn: Gauge
    private let bytesStored: Gauge
    private let resident: Gauge
    private let virtual: Gauge
    private let cpu: Counter
    private let cpuCounted = Mutex(0.0)
    private let openDescriptors: Gauge
    private let maxDescriptors: Gauge
    private let startTime: Gauge

    private static let requests = MetricNameDescriptor(
        namespace: "kvstore", subsystem: "http", metricName: "requests", unitName: "total", helpText: "HTTP requests answered")
    private static let bytes = MetricNameDescriptor(
        namespace: "kvstore", subsystem: "http", metricName: "response_bytes", unitName: "total", helpText: "Body bytes sent")
    private static let requestSeconds = MetricNameDescriptor(
        namespace: "kvstore", subsystem: "http", metricName: "request_duration", unitName: "seconds",
        helpText: "Time from request to response head (to the last byte for kvsnap and pack bodies, see fetch_duration)")
    private static let fetchSeconds = MetricNameDescriptor(
        namespace: "kvstore", metricName: "fetch_duration", unitName: "seconds", helpText: "Time from request to the last byte of a kvsnap or pack body")
    private static let ingestSeconds = MetricNameDescriptor(
        namespace: "kvstore", metricName: "ingest_duration", unitName: "seconds", helpText: "Time from the last byte of an upload to its entry being stored")
    private static let latency: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30)]

    init() {
        func name(_ n: String, _ unit: String, _ help: String, namespace: String = "kvstore") -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: namespace, metricName: n, unitName: unit, helpText: help)
        }
        entries = registry.makeGauge(descriptor: name("store_entries", "", "Entries in the store"))
        bytesIn = registry.makeGauge(descriptor: name("store_bytes_in", "", "Bytes of the snapshots as ingested"))
        bytesStored = registry.makeGauge(descriptor: name("store_bytes_stored", "", "Bytes of the stored packs"))
        resident = registry.makeGauge(descriptor: name("resident_memory", "bytes", "Resident memory size in bytes", namespace: "process"))
        virtual = registry.makeGauge(descriptor: name("virtual_memory", "bytes", "Virtual memory size in bytes", namespace: "process"))
        cpu = registry.makeCounter(descriptor: name("cpu_seconds", "total", "User and system CPU time spent in seconds", namespace: "process"))
        openDescriptors = registry.makeGauge(descriptor: name("open_fds", "", "Number of open file descriptors", namespace: "process"))
        maxDescriptors = registry.makeGauge(descriptor: name("max_fds", "", "Maximum number of open file descriptors (the soft limit)", namespace: "process"))
        startTime = registry.makeGauge(descriptor: name("start_time", "seconds", "Start time of the process since the Unix epoch in seconds", namespace: "process"))
        registry.makeGauge(descriptor: name("build_info", "", "The build serving: API version (docs/openapi.yaml), compiler, configuration; always 1"),
                           labels: Self.buildLabels).set(Double(1))
    }

    /// `kvstore_build_info`'s labels.
    static let buildLabels: [(String, String)] = {
        let yaml = String(decoding: PackageResources.openapi_yaml, as: UTF8.self)
        let api = yaml.split(separator: "\n").first { $0.hasPrefix("  version:") }
            .map { $0.dropFirst(10).trimmingCharacters(in: CharacterSet(charactersIn: " \"")) } ?? "unknown"
        #if compiler(>=6.3)
        let swift = "6.3"
        #elseif compiler(>=6.2)
        let swift = "6.2"
        #else
        let swift = "6.1"
        #endif
        #if DEBUG
        let build = "debug"
        #else
        let build = "release"
        #endif
        return [("api_version", api), ("swift", swift), ("build", build)]
    }()

    func request(route: String, method: String, status: Int) {
        registry.makeCounter(descriptor: Self.requests, labels: [("route", route), ("method", method), ("status", String(status))]).increment()
    }

    func bytesOut(route: String, _ n: Int) {
        registry.makeCounter(descriptor: Self.bytes, labels: [("route", route)]).increment(by: Int64(n))
    }

    func answered(route: String, _ d: Duration) {
        registry.makeDurationHistogram(descriptor: Self.requestSeconds, labels: [("route", route)], buckets: Self.latency).record(d)
    }

    /// A kvsnap or pack body sent whole; `policy` is the entry's.
    func fetched(_ d: Duration, route: String, policy: String) {
        registry.makeDurationHistogram(descriptor: Self.fetchSeconds, labels: [("route", route), ("policy", Self.label(policy))], buckets: Self.latency).record(d)
    }

    /// An upload stored (or found already stored) under `policy`.
    func ingested(_ d: Duration, policy: String) {
        registry.makeDurationHistogram(descriptor: Self.ingestSeconds, labels: [("policy", Self.label(policy))], buckets: Self.latency).record(d)
    }

    /// A policy as a label: its parts without their settings (`airmerge35:near=0.95+int8` is
    /// `airmerge35+int8`), so that uploads naming settings freely cannot grow the series
    /// without bound.
    static func label(_ policy: String) -> String {
        policy.split(separator: "+").map { $0.split(separator: ":", maxSplits: 1).first.map(String.init) ?? "" }.joined(separator: "+")
    }

    /// The exposition, with the store's totals and the process's figures read now.
    func render(root: StoreRoot) throws -> [UInt8] {
        let row = try root.index.db.query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(bytes_in), 0) AS bin, COALESCE(SUM(bytes_out), 0) AS bout FROM entries").first
        entries.set(Double(row?.int("n") ?? 0))
        bytesIn.set(Double(row?.int("bin") ?? 0))
        bytesStored.set(Double(row?.int("bout") ?? 0))
        if let p = ProcessStats.now() {
            resident.set(p.residentBytes)
            virtual.set(p.virtualBytes)
            openDescriptors.set(p.openDescriptors)
            maxDescriptors.set(p.maxDescriptors)
            startTime.set(p.startTime)
            // A counter only grows: add what was spent since the last scrape.
            let delta = cpuCounted.withLock { counted in
                defer { counted = max(counted, p.cpuSeconds) }
                return max(0, p.cpuSeconds - counted)
            }
            cpu.increment(by: delta)
        }
        return registry.emitToBuffer()
    }
}
