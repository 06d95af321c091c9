import Dispatch

/// libdispatch creates its event loop (an epoll and an eventfd) lazily, when its first worker
/// thread starts or its first timer is set, and stops the process (SIGILL) if it cannot have
/// the descriptors then. A command whose inputs had used them all up (a low `ulimit -n`, many
/// files open) met that at its first worker and died instead of reporting EMFILE. Started at
/// once, while descriptors are free, the loop exists before any input is opened.
enum EventLoopPrimer {
    static func prime() {
        let started = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { started.signal() }
        started.wait()
    }
}
