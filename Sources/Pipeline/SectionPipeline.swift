import Dispatch
import Foundation
import LightKV
import Store

/// Stages layers in order on the calling thread while other threads finish and compress them,
/// and appends the sealed sections in order, with at most `inFlight` layers held at once.
///
/// Staging must stay in order (LightKV carries groups from layer to layer); the rest (byte
/// planes, quantization, fidelity, compression) runs beside it on the other cores.
final class SectionPipeline: @unchecked Sendable {
    private let lock = NSLock()
    private let ready = DispatchSemaphore(value: 0)
    private var sealed: [PackWriter.SealedSection?]
    private var next = 0

    private init(layerCount: Int) {
        sealed = Array(repeating: nil, count: layerCount)
    }

    static func run(
        layerCount: Int, codec: CodecSpec, inFlight: Int,
        stage: (Int) -> () -> PackedLayer, append: (PackWriter.SealedSection) throws -> Void
    ) throws {
        let pipeline = SectionPipeline(layerCount: layerCount)
        let queue = DispatchQueue(label: "kvstore.seal", attributes: .concurrent)
        for i in 0..<layerCount {
            // Keep at most `inFlight` encoded layers waiting to be appended.
            while i - pipeline.next >= inFlight {
                pipeline.ready.wait()
                try pipeline.appendReady(append)
            }
            let finish = stage(i)
            queue.async {
                let section = PackWriter.seal(finish(), codec: codec)
                pipeline.store(section, at: i)
            }
            try pipeline.appendReady(append)
        }
        while pipeline.next < layerCount {
            pipeline.ready.wait()
            try pipeline.appendReady(append)
        }
    }

    private func store(_ section: PackWriter.SealedSection, at i: Int) {
        lock.lock()
        sealed[i] = section
        lock.unlock()
        ready.signal()
    }

    private func appendReady(_ append: (PackWriter.SealedSection) throws -> Void) throws {
        while next < sealed.count {
            lock.lock()
            let section = sealed[next]
            sealed[next] = nil
            lock.unlock()
            guard let section else { return }
            try append(section)
            next += 1
        }
    }
}
