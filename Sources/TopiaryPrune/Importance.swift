import CTopiaryKernels
import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels

/// How a unit's importance is measured.
public enum ImportanceCriterion: String, CaseIterable, Codable, Sendable {
    /// First-order Taylor, element-wise: Σ |w·∂L/∂w| over the unit's weights.
    case taylor
    /// First-order Taylor, vector-wise: Σ over the unit's channels of |Σ w·∂L/∂w| along the channel.
    case taylorVector = "taylor-vector"
    /// Second-order Taylor with the Fisher diagonal: Σ ½ Σₛ (w·∂Lₛ/∂w)² over samples s (one backward per window).
    case taylor2
    /// Magnitude: Σ |w|.
    case l1
    /// Magnitude: √Σ w².
    case l2
    /// Uniform random scores (a baseline), seeded.
    case random
    /// Topiary's indicator, activation-aware Taylor: the second-order Taylor (Fisher) score of a unit — or, with
    /// `taylorOrder` 1, its element-wise first-order score — plus λ times
    /// the energy the unit feeds forward — for every member that is a linear's input column j (o_proj columns of a
    /// head group, the down_proj column of an MLP channel), ‖W[:, j]‖² · Σₜ xₜⱼ² over the calibration tokens, the
    /// squared norm of that column's contribution to the layer output (Wanda's |W|·‖X‖ for a whole column, squared).
    /// The score is T · E^λ (T and E each divided by their mean over the group's units): λ weighs the terms on a
    /// logarithmic scale, and λ = 0 is the Taylor term's ranking. The Taylor term sees how the loss responds to the unit on the calibration batch; the energy term sees how
    /// much the unit changes the residual stream, which first-order Taylor misses where gradients cancel.
    case taylorActivation = "taylor-act"
    /// Topiary's structured indicator, OBS saliency of whole units (``StructuredOBS``): computed layer by layer on
    /// the calibration inputs that pass through the already-pruned layers, with the OBS update of the linear reading
    /// the units. Not a static score: `prune` runs it as its own driver.
    case obs
    /// Variational dropout (``VariationalDropout``): −log α per unit, learned on the calibration windows.
    case variationalDropout = "variational-dropout"

    /// True when the criterion needs gradients from calibration data.
    public var needsGradients: Bool { self == .taylor || self == .taylorVector || self == .taylor2 || self == .taylorActivation }

    /// True when the criterion needs per-window Fisher sums (one backward per calibration window).
    public var needsFisher: Bool { self == .taylor2 || self == .taylorActivation }

    /// True when the criterion needs the calibration inputs of each linear (Σₜ x² per input column).
    public var needsActivations: Bool { self == .taylorActivation }

    /// True when units are chosen layer by layer on the pruned model's activations (``StructuredOBS``).
    public var isSequential: Bool { self == .obs }

    /// True when the scores come from a training run on the calibration windows (``VariationalDropout``).
    public var isLearned: Bool { self == .variationalDropout }

    /// True when the criterion reads calibration windows (gradients, layer-by-layer inputs or a training run).
    public var needsCalibration: Bool { needsGradients || isSequential || isLearned }
}

/// How the scores of a unit's members (its slices of several tensors) combine into one number.
public enum Aggregation: String, CaseIterable, Codable, Sendable {
    case sum, mean, max, prod, last

    public func combine(_ values: [Double]) -> Double {
        switch self {
        case .sum: return values.reduce(0, +)
        case .mean: return values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count)
        case .max: return values.max() ?? 0
        case .prod: return values.reduce(1, *)
        case .last: return values.last ?? 0
        }
    }
}

/// Scores every unit of a group (higher = more important = kept).
public protocol ImportanceEstimator {
    /// One score per unit of `group`.
    func scores(for group: PruningGroup, parameters: [String: Parameter]) throws -> [Double]
}

/// The estimator for a criterion and an aggregation. Gradient-based criteria read the statistics that
/// ``Calibration`` accumulated (`grad` for first order, the Fisher sums for second order).
public struct CriterionEstimator: ImportanceEstimator {
    public let criterion: ImportanceCriterion
    public let aggregation: Aggregation
    public let fisher: [String: Tensor]
    public let seed: UInt64
    /// Σₜ x² per input column of each linear, by weight name (``Calibration/inputEnergies(_:_:)``), for `taylor-act`.
    public var activations: [String: Tensor] = [:]
    /// Weight of the activation term of `taylor-act` (0: its Taylor term alone).
    public var lambda = 1.0
    /// `taylor-act`'s Taylor term: 2 — the second-order Fisher term ½Σₛ(w·gₛ)² (needs `fisher`); 1 — element-wise
    /// first order Σ|w·g|.
    public var taylorOrder = 2

    public init(criterion: ImportanceCriterion, aggregation: Aggregation, fisher: [String: Tensor] = [:], seed: UInt64 = 0) {
        self.criterion = criterion
        self.aggregation = aggregation
        self.fisher = fisher
        self.seed = seed
    }

    public func scores(for group: PruningGroup, parameters: [String: Parameter]) throws -> [Double] {
        if criterion == .random {
            var rng = SplitMix64(seed: seed &+ UInt64(group.id) &* 0x9E37_79B9)
            return (0..<group.units).map { _ in rng.nextDouble() }
        }
        if criterion == .taylorActivation {
            let taylor = try CriterionEstimator(criterion: taylorOrder == 2 ? .taylor2 : .taylor, aggregation: aggregation, fisher: fisher)
                .scores(for: group, parameters: parameters)
            var energy = [Double](repeating: 0, count: group.units)
            var found = false
            for m in group.members where m.axis == 1 {
                guard let p = parameters[m.tensor], let x = activations[m.tensor], x.count == p.shape[1] else { continue }
                found = true
                let w = p.value
                let squares = Tensor(uninitialized: w.shape)
                tk_mul(w.pointer, w.pointer, squares.pointer, w.count)
                let columns = squares.sums(keepingAxis: 1)  // ‖W[:, j]‖²
                for u in 0..<group.units { for j in m.channels(ofUnit: u) { energy[u] += columns[j] * Double(x[j]) } }
            }
            guard found else { return taylor }
            func normalised(_ v: [Double]) -> [Double] {
                let mean = v.reduce(0, +) / Double(max(1, v.count))
                return mean > 0 ? v.map { $0 / mean } : v
            }
            // A product (a sum of logarithms): scale-free, so a heavy-tailed Taylor term is not swamped by the energy
            // term for most units, and λ → 0 gives the Taylor ranking back.
            return zip(normalised(taylor), normalised(energy)).map { $0 * pow(max($1, 1e-30), lambda) }
        }
        var perMember: [[Double]] = []
        for m in group.members {
            guard let p = parameters[m.tensor] else { throw PruneError.unknownTensor(m.tensor) }
            let channel = try channelScores(p, axis: m.axis)
            perMember.append((0..<group.units).map { u in
                let s = m.channels(ofUnit: u).reduce(0) { $0 + channel[$1] }
                return criterion == .l2 ? s.squareRoot() : s
            })
        }
        return (0..<group.units).map { u in aggregation.combine(perMember.map { $0[u] }) }
    }

    /// One value per index of `axis`, before summing over a unit's channels.
    func channelScores(_ p: Parameter, axis: Int) throws -> [Double] {
        let w = p.value
        let n = w.count
        switch criterion {
        case .l1, .l2:
            let e = Tensor(uninitialized: w.shape)
            if criterion == .l1 { for i in 0..<n { e[i] = abs(w[i]) } } else { tk_mul(w.pointer, w.pointer, e.pointer, n) }
            return e.sums(keepingAxis: axis)
        case .taylor, .taylorVector:
            guard let g = p.grad else { throw PruneError.missingGradient(p.name) }
            let e = Tensor(uninitialized: w.shape)
            tk_mul(w.pointer, g.pointer, e.pointer, n)
            if criterion == .taylor {
                for i in 0..<n { e[i] = abs(e[i]) }
                return e.sums(keepingAxis: axis)
            }
            return e.sums(keepingAxis: axis).map(abs)
        case .taylor2:
            guard let f = fisher[p.name] else { throw PruneError.missingGradient(p.name) }
            return f.sums(keepingAxis: axis)
        case .random, .taylorActivation:
            return [Double](repeating: 0, count: w.shape[axis])
        case .obs:
            throw PruneError.notApplicable("obs scores are computed layer by layer while pruning (StructuredOBS), not ahead of it")
        case .variationalDropout:
            throw PruneError.notApplicable("variational-dropout scores are learned on calibration data (VariationalDropout), not computed from weights")
        }
    }
}

/// Scores computed earlier (e.g. layer by layer on a streamed model), by group id.
public struct PrecomputedScores: ImportanceEstimator {
    public let scores: [Int: [Double]]

    public init(_ scores: [Int: [Double]]) { self.scores = scores }

    public func scores(for group: PruningGroup, parameters: [String: Parameter]) throws -> [Double] {
        guard let s = scores[group.id], s.count == group.units else {
            throw PruneError.notApplicable("no scores were computed for group \(group.id) (\(group.kind), layer \(group.layer.map(String.init) ?? "-"))")
        }
        return s
    }
}

/// Errors of pruning.
public enum PruneError: Error, LocalizedError, Equatable {
    case invalidRatio(Double)
    case layerRange(String, layers: Int)
    case wouldEmptyGroup(group: Int, kind: String, layer: Int?, units: Int)
    case unknownTensor(String)
    case missingGradient(String)
    case calibration(String)
    case notApplicable(String)

    public var errorDescription: String? {
        switch self {
        case let .invalidRatio(r): return "--ratio \(r) is outside [0, 1)"
        case let .layerRange(s, layers): return "--layers \(s) is not a range inside the model's layers 0-\(layers - 1) (e.g. 3-27)"
        case let .wouldEmptyGroup(g, kind, layer, units):
            return "the ratio would remove every unit of \(kind) group \(g)\(layer.map { " (layer \($0))" } ?? "") of \(units) units; the last unit of a group is never removed — use a smaller ratio"
        case let .unknownTensor(t): return "the dependency graph names tensor '\(t)' that the model does not have"
        case let .missingGradient(t): return "no gradient for '\(t)': run calibration before a gradient-based importance"
        case let .calibration(m): return "calibration: \(m)"
        case let .notApplicable(m): return m
        }
    }
}
