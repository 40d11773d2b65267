import Foundation
import TopiaryCore

/// Learns how a structured pruning budget is spread over layers: an evolutionary search over per-layer shares (see
/// ``StructuredPruner/layerShares``) with the global budget fixed, rewarded by a fitness the caller measures — the
/// perplexity of the pruned model on calibration windows, never the evaluation windows. On a 2-core CPU a few dozen
/// evaluations are affordable, where a policy-gradient agent (AMC) would need hundreds of episodes; a (μ + λ) evolution
/// with budget-preserving mutations uses each evaluation better.
///
/// Candidates start from equal shares (the uniform baseline, always evaluated first, so the search never returns
/// something worse than it on the reward), ramps that prune later layers more or less, and random perturbations.
/// A mutation moves a random amount of budget from one layer to another; a crossover averages two parents. Shares are
/// kept in [`minimumShare`, `maximumShare`] and renormalised to average 1.
public struct LayerRatioSearch {
    public var layers: [Int]
    /// Candidates evaluated in all (the uniform start included).
    public var evaluations = 40
    public var population = 8
    public var minimumShare = 0.0
    public var maximumShare = 2.5
    public var seed: UInt64 = 0

    public struct Result: Codable, Sendable {
        /// The best shares, by layer.
        public var shares: [Int: Double]
        public var fitness: Double
        public var uniformFitness: Double
        /// Every evaluated candidate: shares (in `layers` order) and fitness, in order.
        public var history: [Candidate]
    }

    public struct Candidate: Codable, Sendable {
        public var shares: [Double]
        public var fitness: Double
    }

    public init(layers: [Int], evaluations: Int = 40, population: Int = 8, seed: UInt64 = 0) {
        self.layers = layers
        self.evaluations = evaluations
        self.population = population
        self.seed = seed
    }

    /// Runs the search; `fitness` (lower is better) is called with shares by layer. Candidates whose pruning is
    /// impossible (a layer would lose every unit) may throw ``PruneError``: they are skipped.
    public func run(progress: ProgressBar? = nil, fitness: ([Int: Double]) throws -> Double) throws -> Result {
        let n = layers.count
        guard n > 0, evaluations >= 1, population >= 2 else {
            throw PruneError.notApplicable("layer-ratio search needs layers, ≥ 1 evaluation and a population ≥ 2")
        }
        var rng = SplitMix64(seed: seed)
        /// The nearest shares (by a common shift) inside the bounds that average 1: bisection on the shift t of
        /// mean(clamp(v + t)), which grows with t.
        func normalised(_ v: [Double]) -> [Double] {
            func shifted(_ t: Double) -> [Double] { v.map { min(maximumShare, max(minimumShare, $0 + t)) } }
            var lo = -(v.max() ?? 0) - maximumShare, hi = maximumShare - (v.min() ?? 0)
            for _ in 0..<100 {
                let mid = (lo + hi) / 2
                if shifted(mid).reduce(0, +) / Double(n) < 1 { lo = mid } else { hi = mid }
            }
            return shifted((lo + hi) / 2)
        }
        var history: [Candidate] = []
        func evaluate(_ shares: [Double]) throws -> Candidate? {
            guard history.count < evaluations else { return nil }
            let byLayer = Dictionary(uniqueKeysWithValues: zip(layers, shares))
            let f: Double
            do { f = try fitness(byLayer) } catch is PruneError { f = .infinity }
            let c = Candidate(shares: shares, fitness: f.isFinite ? f : .infinity)
            history.append(c)
            progress?.advance(status: String(format: "best %.4f", history.map(\.fitness).min()!))
            return c
        }
        // Initial population: uniform, ramps both ways, random perturbations.
        let uniform = Array(repeating: 1.0, count: n)
        var pool: [Candidate] = []
        var starts = [uniform]
        for slope in [0.5, -0.5, 1.0] {
            starts.append(normalised((0..<n).map { 1 + slope * (Double($0) / Double(max(1, n - 1)) - 0.5) }))
        }
        while starts.count < population { starts.append(normalised((0..<n).map { _ in 1 + 0.6 * (rng.nextDouble() - 0.5) })) }
        for s in starts { if let c = try evaluate(s) { pool.append(c) } }
        guard let uniformFitness = history.first?.fitness else {
            throw PruneError.notApplicable("the uniform candidate could not be evaluated")
        }
        // (μ + λ): children of the best half replace the worst.
        while history.count < evaluations {
            pool.sort { $0.fitness < $1.fitness }
            let parents = Array(pool.prefix(max(2, population / 2)))
            var child: [Double]
            let a = parents[Int(rng.next() % UInt64(parents.count))].shares
            if rng.nextDouble() < 0.3 {
                let b = parents[Int(rng.next() % UInt64(parents.count))].shares
                child = zip(a, b).map { ($0 + $1) / 2 }
            } else {
                child = a
            }
            for _ in 0..<(1 + Int(rng.next() % 3)) {  // move budget between two layers
                let i = Int(rng.next() % UInt64(n)), j = Int(rng.next() % UInt64(n))
                guard i != j else { continue }
                let delta = min(child[i], 0.1 + 0.4 * rng.nextDouble())
                child[i] -= delta
                child[j] += delta
            }
            guard let c = try evaluate(normalised(child)) else { break }
            pool.append(c)
            pool.sort { $0.fitness < $1.fitness }
            pool = Array(pool.prefix(population))
        }
        progress?.finish()
        let best = history.min { $0.fitness < $1.fitness }!
        return Result(
            shares: Dictionary(uniqueKeysWithValues: zip(layers, best.shares)), fitness: best.fitness,
            uniformFitness: uniformFitness, history: history)
    }
}
