/// The compression frontier of a snapshot: for each method, how small (× smaller than F16)
/// against how wrong (attention-output relative error with proportional attention).
///
/// Every method is swept over retentions, each with and without quantization; each point is a
/// full `PolicyEvaluation` (reduce, encode, decode, compare), so it is what ingest would store.
///
///     let f = try Frontier(snapshot: s, sweep: .standard)
///     print(f.points.map(\.policy))
public struct Frontier: Sendable, Codable {
    /// Which policies to evaluate.
    public struct Sweep: Sendable, Equatable {
        /// Reduction methods, spelled as policy stems (`airmerge`, `prompt-topk`, …).
        public var methods: [String]
        /// Average vision retentions in percent.
        public var retentions: [Int]
        /// Quantizations appended to each reduction (`f16` for none).
        public var quantizations: [String]

        public init(methods: [String], retentions: [Int], quantizations: [String]) {
            self.methods = methods; self.retentions = retentions; self.quantizations = quantizations
        }

        /// Every reduction method at 5, 10, 20, 35 and 55%, in F16 and with the smallest int4.
        public static let standard = Sweep(
            methods: ["lightkv", "tome", "airmerge", "aircache", "prompt-topk", "uniform", "random"],
            retentions: [5, 10, 20, 35, 55], quantizations: ["f16", "int4g128m0t0r1"])

        /// The policies, method-major (one curve after another).
        public var policies: [(curve: String, policy: String)] {
            var out: [(String, String)] = []
            for method in methods {
                for quant in quantizations {
                    let curve = quant == "f16" ? method : "\(method)+\(quant)"
                    for r in retentions { out.append((curve, quant == "f16" ? "\(method)\(r)" : "\(method)\(r)+\(quant)")) }
                }
            }
            return out
        }
    }

    public struct Point: Sendable, Codable, Equatable {
        /// The curve this point belongs to (method, and quantization if any).
        public var curve: String
        public var policy: String
        public var requestedRetention: Double?
        public var visionRetention: Double
        /// Input keys and values as F16 over the encoded key and value blocks.
        public var timesSmaller: Double
        public var relativeError: Double
    }

    public var points: [Point]

    /// Evaluates every policy of `sweep` on `snapshot`; `progress(done, total)` after each.
    public init(snapshot: Snapshot, sweep: Sweep, progress: (Int, Int) -> Void = { _, _ in }) throws(FrontierError) {
        let f16Bytes = snapshot.layerCount * snapshot.kvHeads * snapshot.seqLen * (snapshot.headDim + snapshot.vHeadDim) * 2
        let policies = sweep.policies
        var points: [Point] = []
        for (i, item) in policies.enumerated() {
            let policy: Policy
            do { policy = try Policy(parsing: item.policy) } catch { throw .policy(error) }
            let e: PolicyEvaluation
            do { e = try PolicyEvaluation(snapshot: snapshot, policy: policy) } catch { throw .evaluation(policy: item.policy, error) }
            points.append(Point(curve: item.curve, policy: item.policy, requestedRetention: e.requestedRetention,
                                visionRetention: e.overall.visionRetention,
                                timesSmaller: Double(f16Bytes) / Double(max(e.overall.encodedBytes, 1)),
                                relativeError: e.overall.proportional.relativeError))
            progress(i + 1, policies.count)
        }
        self.points = points
    }

    /// The curves in sweep order, each point list in sweep order.
    public var curves: [(name: String, points: [Point])] {
        var names: [String] = []
        for p in points where !names.contains(p.curve) { names.append(p.curve) }
        return names.map { n in (n, points.filter { $0.curve == n }) }
    }
}

/// A frontier sweep that cannot run.
public enum FrontierError: Error, CustomStringConvertible {
    case policy(PolicyError)
    case evaluation(policy: String, EvaluationError)

    public var description: String {
        switch self {
        case .policy(let e): "\(e)"
        case .evaluation(let p, let e): "\(p): \(e)"
        }
    }
}
