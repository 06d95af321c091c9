import Foundation

/// Writes decoded layers to a positional sink from several decoding threads, one write at a
/// time: a thread whose layer is ready while another writes leaves it queued and goes on
/// decoding, and the writing thread takes it next. File systems hold a file's lock for the
/// whole of a buffered write (ext4, XFS), so two threads writing at once gain nothing and
/// the second spins in the kernel until the first is done. At most `depth` layers wait: a
/// thread with another ready waits for room, so a slow write never holds the whole output in
/// memory.
final class PositionalWriter<Sink: FetchSink>: @unchecked Sendable {
    private let sink: Sink
    private let depth: Int
    private let condition = NSCondition()
    private var queued: [(layer: DecodedLayer, offset: Int)] = []
    private var writing = false
    private var failed = false

    init(_ sink: Sink, depth: Int = 1) {
        self.sink = sink
        self.depth = depth
    }

    /// Writes `layer` at `offset` now, or has the thread that is writing write it. Throws what
    /// a write throws, on the thread that made it; queued layers are then dropped (the fetch
    /// fails) and later calls return at once.
    func write(_ layer: DecodedLayer, at offset: Int) throws {
        condition.lock()
        while writing && queued.count >= depth && !failed { condition.wait() }
        if failed { condition.unlock(); return }
        queued.append((layer, offset))
        if writing { condition.unlock(); return }
        writing = true
        while let next = queued.popLast() {
            condition.broadcast()  // room in the queue
            condition.unlock()
            do { try next.layer.write(to: sink, at: next.offset) } catch {
                condition.lock()
                queued.removeAll(); writing = false; failed = true
                condition.broadcast()
                condition.unlock()
                throw error
            }
            condition.lock()
        }
        writing = false
        condition.broadcast()
        condition.unlock()
    }
}
