import Foundation

/// Test "hosts": each a network namespace of its own, joined to this one by a veth pair
/// (`ip netns`, `ip link`), so a process run there reaches the test servers only over a
/// network link, at the host-side address, as a process on another machine would. Where the
/// namespaces cannot be made (not root, no CAP_NET_ADMIN) every host is this machine and
/// processes stand in for hosts.
final class TestHosts {
    struct Host {
        /// The namespace, nil when the host is this machine.
        let namespace: String?
        /// Where this host reaches the servers: the host-side address of its link, or loopback.
        let serverAddress: String
    }

    let hosts: [Host]
    var isolated: Bool { hosts.first?.namespace != nil }

    init(count: Int) {
        let pid = Int(getpid())
        var made: [Host] = []
        for i in 0..<count {
            let namespace = "kv\(pid)h\(i)", link = "kv\(pid % 100_000)h\(i)"
            let subnet = "10.\((pid >> 8) & 0xff).\(pid & 0xff)"
            let outside = "\(subnet).\(4 * i + 1)", inside = "\(subnet).\(4 * i + 2)"
            let steps = [
                ["netns", "add", namespace],
                ["link", "add", link, "type", "veth", "peer", "name", link + "p"],
                ["link", "set", link + "p", "netns", namespace],
                ["addr", "add", outside + "/30", "dev", link],
                ["link", "set", link, "up"],
                ["netns", "exec", namespace, "ip", "addr", "add", inside + "/30", "dev", link + "p"],
                ["netns", "exec", namespace, "ip", "link", "set", link + "p", "up"],
                ["netns", "exec", namespace, "ip", "link", "set", "lo", "up"],
            ]
            guard steps.allSatisfy({ Self.ip($0) }) else {
                Self.remove(namespace: namespace, link: link)
                made.forEach { Self.remove(namespace: $0.namespace!, link: nil) }
                made = []
                break
            }
            made.append(Host(namespace: namespace, serverAddress: outside))
        }
        hosts = made.isEmpty ? (0..<count).map { _ in Host(namespace: nil, serverAddress: "127.0.0.1") } : made
    }

    deinit {
        for host in hosts { if let namespace = host.namespace { Self.remove(namespace: namespace, link: nil) } }
    }

    /// The executable and arguments that run `binary ARGS` on `host`.
    func command(on host: Host, _ binary: String, _ args: [String]) -> (executable: String, arguments: [String]) {
        guard let namespace = host.namespace else { return (binary, args) }
        return (Self.ipPath, ["netns", "exec", namespace, binary] + args)
    }

    /// Deleting the namespace deletes its end of the link, and with it the other end.
    private static func remove(namespace: String, link: String?) {
        _ = ip(["netns", "del", namespace])
        if let link { _ = ip(["link", "del", link]) }
    }

    private static let ipPath = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "ip"

    @discardableResult
    private static func ip(_ args: [String]) -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ipPath)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }
}
