import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Turns SIGTERM and SIGINT into a call, for a graceful stop.
///
/// The default action of both signals is to kill the process at once, so they are ignored
/// first and then observed through dispatch sources, which run `handler` on a queue
/// instead of inside a signal handler (where almost nothing is safe to call).
public final class ShutdownSignals {
    private var sources: [DispatchSourceSignal] = []

    /// Installs the handlers; they stay for as long as the returned value lives.
    public init(_ handler: @escaping @Sendable (Int32) -> Void) {
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { handler(sig) }
            source.resume()
            sources.append(source)
        }
    }

    deinit { for s in sources { s.cancel() } }
}
