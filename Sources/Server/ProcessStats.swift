import Foundation

/// What `/proc` says about this process, for the `process_*` metrics Prometheus expects of
/// every exporter (resident and virtual memory, CPU seconds, descriptors, start time).
struct ProcessStats {
    var residentBytes: Double
    var virtualBytes: Double
    var cpuSeconds: Double
    var openDescriptors: Double
    var maxDescriptors: Double
    /// Unix seconds.
    var startTime: Double

    /// Reads `/proc/self/stat`, `/proc/self/fd` and `/proc/stat` now; nil off Linux or when
    /// `/proc` is not mounted.
    static func now() -> ProcessStats? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // After "pid (comm)": field 3 is state; utime 14, stime 15, starttime 22, vsize 23, rss 24.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        func field(_ n: Int) -> Double { Double(fields[n - 3]) ?? 0 }
        guard fields.count > 21 else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK))), page = Double(sysconf(Int32(_SC_PAGESIZE)))
        let boot = (try? String(contentsOfFile: "/proc/stat", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("btime ") }.flatMap { Double($0.dropFirst(6)) } ?? 0
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        return ProcessStats(residentBytes: field(24) * page, virtualBytes: field(23), cpuSeconds: (field(14) + field(15)) / ticks,
                            openDescriptors: Double(descriptors), maxDescriptors: Double(limit.rlim_cur),
                            startTime: boot + field(22) / ticks)
    }
}
