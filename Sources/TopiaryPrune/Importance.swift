import CTopiaryKernels
import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels

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

/// The estimator for a criterion and an aggregation: the criterion (``Criteria``) scores each group from the statistics
/// that ``ImportanceScoring`` gathered (`grad` for first order, the Fisher sums for second order, input energies).
public struct CriterionEstimator: ImportanceEstimator {
    public let criterion: ImportanceCriterion
    public let aggregation: Aggregation
    public var statistics: CriterionStatistics
    public var options: CriterionOptions

    public init(
        criterion: ImportanceCriterion, aggregation: Aggregation, statistics: CriterionStatistics = CriterionStatistics(),
        options: CriterionOptions = CriterionOptions()
    ) {
        self.criterion = criterion
        self.aggregation = aggregation
        self.statistics = statistics
        self.options = options
    }

    public init(criterion: ImportanceCriterion, aggregation: Aggregation, fisher: [String: Tensor], seed: UInt64 = 0) {
        var options = CriterionOptions()
        options.seed = seed
        self.init(criterion: criterion, aggregation: aggregation, statistics: CriterionStatistics(fisher: fisher), options: options)
    }

    /// Σₜ x² per input column of each linear, by weight name (``Calibration/inputEnergies(_:_:weights:)``).
    public var activations: [String: Tensor] {
        get { statistics.activations }
        set { statistics.activations = newValue }
    }
    /// `taylor-act`'s λ and Taylor order (see ``CriterionOptions``).
    public var lambda: Double {
        get { options.lambda }
        set { options.lambda = newValue }
    }
    public var taylorOrder: Int {
        get { options.taylorOrder }
        set { options.taylorOrder = newValue }
    }

    public func scores(for group: PruningGroup, parameters: [String: Parameter]) throws -> [Double] {
        try criterion.implementation.scores(
            for: group, parameters: parameters, statistics: statistics, options: options,
            aggregation: aggregation)
    }
}

/// Scores computed earlier (e.g. layer by layer on a streamed model), by group id.
public struct PrecomputedScores: ImportanceEstimator {
    public let scores: [Int: [Double]]
    /// The file the scores were read from (named when a group has none: they were computed for another model).
    public let source: String?

    public init(_ scores: [Int: [Double]], source: String? = nil) {
        self.scores = scores
        self.source = source
    }

    public func scores(for group: PruningGroup, parameters: [String: Parameter]) throws -> [Double] {
        guard let s = scores[group.id], s.count == group.units else {
            let which = "group \(group.id) (\(group.kind), layer \(group.layer.map(String.init) ?? "-"), \(group.units) units)"
            throw PruneError.notApplicable(
                source.map { "\($0) has no scores for \(which): it was computed for another model" }
                    ?? "no scores were computed for \(which)")
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
            return
                "the ratio would remove every unit of \(kind) group \(g)\(layer.map { " (layer \($0))" } ?? "") of \(units) units; the "
                + "last unit of a group is never removed — use a smaller ratio"
        case let .unknownTensor(t): return "the dependency graph names tensor '\(t)' that the model does not have"
        case let .missingGradient(t): return "no gradient for '\(t)': run calibration before a gradient-based importance"
        case let .calibration(m): return "calibration: \(m)"
        case let .notApplicable(m): return m
        }
    }
}
