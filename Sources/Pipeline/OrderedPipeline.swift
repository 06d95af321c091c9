import Dispatch
import Foundation

/// Runs items `0..<count` through three steps: `stage` on the calling thread in order, the
/// work it returns on other threads, and `consume` back on the calling thread in order, with
/// at most `inFlight` items staged but not yet consumed.
///
/// Ingest stages layers in order (LightKV carries groups from layer to layer) while byte
/// planes, quantization and compression run on the other cores, and appends sections in
/// order; fetch decodes layers on the other cores while it writes the previous ones out.
enum OrderedPipeline {
    static func run<T>(
        count: Int, inFlight: Int, stage: (Int) throws -> () throws -> T, consume: (T) throws -> Void
    ) throws {
        let state = State<T>(count: count)
        let queue = DispatchQueue(label: "kvstore.pipeline", attributes: .concurrent)
        let group = DispatchGroup()
        // Whether it ends or throws, nothing outlives the call: work still running would
        // read inputs (memory maps, files) the caller is about to release.
        defer { group.wait() }
        for i in 0..<count {
            while i - state.next >= inFlight { try state.consumeReady(waiting: true, consume) }
            let work = try stage(i)
            queue.async(group: group) {
                let result = Result { try work() }
                state.store(result, at: i)
            }
            try state.consumeReady(waiting: false, consume)
        }
        while state.next < count { try state.consumeReady(waiting: true, consume) }
    }

    private final class State<T>: @unchecked Sendable {
        private let lock = NSLock()
        private let ready = DispatchSemaphore(value: 0)
        private var results: [Result<T, Error>?]
        private(set) var next = 0

        init(count: Int) { results = Array(repeating: nil, count: count) }

        func store(_ result: Result<T, Error>, at i: Int) {
            lock.lock()
            results[i] = result
            lock.unlock()
            ready.signal()
        }

        /// Consumes finished items in order; with `waiting`, first waits for one to finish.
        func consumeReady(waiting: Bool, _ consume: (T) throws -> Void) throws {
            if waiting { ready.wait() }
            while next < results.count {
                lock.lock()
                let result = results[next]
                results[next] = nil
                lock.unlock()
                guard let result else { return }
                next += 1
                try consume(result.get())
            }
        }
    }
}
