import Foundation

/// Writes decoded layers to a positional sink from several decoding threads, one write at a
/// time: a thread whose layer is ready while another writes leaves it queued and goes on
/// decoding, and the writing thread takes it next. File systems hold a file's lock for the
/// whole of a buffered write (ext4, XFS), so two threads writing at once gain nothing and
/// the second spins in the kernel until the first is done.
final class PositionalWriter<Sink: FetchSink>: @unchecked Sendable {
    private let sink: Sink
    private let lock = NSLock()
    private var queued: [(layer: DecodedLayer, offset: Int)] = []
    private var writing = false

    init(_ sink: Sink) { self.sink = sink }

    /// Writes `layer` at `offset` now, or has the thread that is writing write it. Throws what
    /// a write throws, on the thread that made it (queued layers are then dropped: the fetch
    /// fails).
    func write(_ layer: DecodedLayer, at offset: Int) throws {
        lock.lock()
        queued.append((layer, offset))
        if writing { lock.unlock(); return }
        writing = true
        while let next = queued.popLast() {
            lock.unlock()
            do { try next.layer.write(to: sink, at: next.offset) } catch {
                lock.lock(); queued.removeAll(); writing = false; lock.unlock()
                throw error
            }
            lock.lock()
        }
        writing = false
        lock.unlock()
    }
}
