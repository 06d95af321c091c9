import Foundation

/// A TCP proxy (on every address: test hosts in network namespaces reach it) in front of a
/// server on 127.0.0.1 that forwards every byte both ways, and
/// holds a client's request once it sees one starting with a given method: the request
/// stops there until `release()`, and the server never sees it (its connection is cut). A
/// test kills a process at that exact step, e.g. after its PUT was answered and before its
/// confirming HEAD.
final class HoldingProxy: @unchecked Sendable {
    let port: Int
    private let upstream: Int
    private let listener: Int32
    private let condition = NSCondition()
    private var holdMethod: String?
    private var held = false
    private var released = false

    init(upstreamPort: Int) throws {
        upstream = upstreamPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        address.sin_addr.s_addr = INADDR_ANY
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    deinit {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    /// From now on, hold the first request whose first bytes are `method` and a space.
    func hold(_ method: String) {
        condition.lock(); holdMethod = method; held = false; released = false; condition.unlock()
    }

    /// Waits until a request is held; false after `timeout` seconds.
    func waitUntilHeld(timeout: Double) -> Bool {
        condition.lock(); defer { condition.unlock() }
        let deadline = Date().addingTimeInterval(timeout)
        while !held { if !condition.wait(until: deadline) { return held } }
        return true
    }

    /// Lets the held request (and every later one) through.
    func release() {
        condition.lock(); holdMethod = nil; released = true; condition.broadcast(); condition.unlock()
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: upstream)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { close(client); close(server); continue }
            Thread.detachNewThread { [self] in pump(from: client, to: server, inspect: true) }
            Thread.detachNewThread { [self] in pump(from: server, to: client, inspect: false) }
        }
    }

    private func pump(from source: Int32, to destination: Int32, inspect: Bool) {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = read(source, &buffer, buffer.count)
            guard n > 0 else { break }
            if inspect, wasHeld(buffer[0..<n]) { break }
            var sent = 0
            while sent < n {
                let w = buffer[sent..<n].withUnsafeBytes { write(destination, $0.baseAddress, $0.count) }
                guard w > 0 else { break }
                sent += w
            }
            if sent < n { break }
        }
        shutdown(destination, Int32(SHUT_WR))
        shutdown(source, Int32(SHUT_RD))
    }

    /// True (after `release()`) when `bytes` begin the request to hold.
    private func wasHeld(_ bytes: ArraySlice<UInt8>) -> Bool {
        condition.lock(); defer { condition.unlock() }
        guard let method = holdMethod, bytes.starts(with: Array((method + " ").utf8)) else { return false }
        held = true
        condition.broadcast()
        while !released { condition.wait() }
        return true
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }
}
