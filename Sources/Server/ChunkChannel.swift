import Dispatch
import Foundation
import Hummingbird
import Pipeline

/// Carries a fetch, written by a blocking thread, to an HTTP response, written by async code,
/// a chunk at a time: the writer waits when `capacity` chunks are unsent, so a slow client
/// holds back decoding instead of piling decoded layers up in memory.
final class ChunkChannel: FetchSink, @unchecked Sendable {
    static let chunkBytes = 1 << 20
    // A condition, not a DispatchSemaphore: libdispatch traps when a semaphore is freed
    // below its initial value, which is what a channel abandoned mid-stream would do.
    private let condition = NSCondition()
    private var slots: Int
    private var cancelled = false
    let stream: AsyncThrowingStream<ByteBuffer, Error>
    private let continuation: AsyncThrowingStream<ByteBuffer, Error>.Continuation

    init(capacity: Int = 4) {
        slots = capacity
        (stream, continuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self, throwing: Error.self)
        continuation.onTermination = { [weak self] _ in self?.cancel() }
    }

    /// Blocks until a slot is free; throws once the response has gone away.
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = min(Self.chunkBytes, bytes.count - offset)
            condition.lock()
            while slots == 0 && !cancelled { condition.wait() }
            let stop = cancelled
            if !stop { slots -= 1 }
            condition.unlock()
            if stop { throw CancellationError() }
            continuation.yield(ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])))
            offset += n
        }
    }

    func finish() throws { continuation.finish() }
    func fail(_ error: Error) { continuation.finish(throwing: error) }

    /// The consumer sent a chunk: one more may be written.
    func sent() {
        condition.lock(); slots += 1; condition.signal(); condition.unlock()
    }

    /// The consumer stopped (client gone, server shutting down): wake and stop the writer.
    func cancel() {
        condition.lock(); cancelled = true; condition.broadcast(); condition.unlock()
    }
}
