import Foundation
import LightKV
import Store

/// The attention-output fidelity an ingest records when its input carries `probe_query`:
/// the figures `kvstore eval` prints, measured on a sample of layers so that recording them
/// costs a fraction of the ingest (each measured layer runs attention three times over it).
public final class IngestFidelity: @unchecked Sendable {
    public enum Mode: String, Sendable, CaseIterable {
        /// Not measured.
        case off
        /// Every 8th layer and the last one.
        case sample
        /// Every layer.
        case all
    }

    private let snapshot: Snapshot
    private let mode: Mode
    private let layout: VisionLayout
    private let active: Bool
    private let lock = NSLock()
    private var layers: [PolicyEvaluation.Layer] = []
    private var failure: String?

    public init(snapshot: Snapshot, policy: Policy, mode: Mode) {
        self.snapshot = snapshot
        self.mode = mode
        layout = VisionLayout(spans: snapshot.metadata.spans, seqLen: snapshot.seqLen)
        // An exact policy loses nothing; there is nothing to measure.
        let exact = policy.reduction == .none && policy.quantization == .none
        active = mode != .off && !exact && snapshot.layers.allSatisfy { $0.probeQuery != nil }
    }

    /// Layers larger than this (keys and values as stored in the input) are not measured:
    /// measuring holds the layer three more times as F32, and a single long-context layer
    /// would multiply an ingest's memory (docs/DESIGN.md, "Limits"). `kvstore eval` measures
    /// such inputs offline.
    public static let largestMeasuredLayer = 64 << 20

    func isMeasured(_ i: Int) -> Bool {
        let l = snapshot.layers[i]
        guard l.key.range.count + l.value.range.count <= Self.largestMeasuredLayer else { return false }
        switch mode {
        case .off: return false
        case .all: return true
        case .sample: return i % 8 == 0 || i == snapshot.layerCount - 1
        }
    }

    /// Measures layer `i` if it is in the sample (thread-safe; called from pipeline workers).
    /// With `segment`, `packed` is a segmented entry's own part and the layer measured is the
    /// segment's entries followed by it: what a fetch hands back.
    func measure(layer i: Int, packed: PackedLayer, segment: PackReader? = nil) {
        guard active, isMeasured(i), let probes = snapshot.queries(snapshot.layers[i].probeQuery) else { return }
        let l = snapshot.layers[i]
        do {
            let input = snapshot.floatLayer(i)
            var decoded = try PolicyEvaluation.decode(packed, like: input, layer: i)
            var encodedBytes = packed.keys.bytes.count + packed.values.bytes.count
            if let segment {
                let section = try segment.section(i)
                decoded = try section.floatLayer(kvHeads: input.kvHeads, headDim: input.headDim, vHeadDim: input.vHeadDim,
                                                 path: segment.path).joined(decoded)
                encodedBytes += section.descriptor.keys.length + section.descriptor.values.length
            }
            let figures = try PolicyEvaluation.Layer(
                measuring: i, input: input, decoded: decoded, encodedBytes: encodedBytes, probes: probes, layout: layout,
                inputBytes: l.key.range.count + l.value.range.count)
            lock.lock(); layers.append(figures); lock.unlock()
        } catch {
            lock.lock(); failure = "\(error)"; lock.unlock()
        }
    }

    /// What the index records: overall means and the layers they came from, as JSON; nil when
    /// nothing was measured.
    func summaryJSON() -> String? {
        lock.lock(); defer { lock.unlock() }
        guard active else { return nil }
        let measured = layers.sorted { $0.layer < $1.layer }
        let summary = PolicyEvaluation.Summary(layers: measured)
        var object: [String: Any] = [
            "probes": "probe_query",
            "layers_measured": measured.map(\.layer),
            "vision_retention": summary.visionRetention,
            "proportional": ["cosine": summary.proportional.cosine, "relative_error": summary.proportional.relativeError],
            "plain": ["cosine": summary.plain.cosine, "relative_error": summary.plain.relativeError],
        ]
        if let failure { object["error"] = failure }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
