import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels

/// Variational dropout (``VariationalDropout``): −log α per unit of a Gaussian gate, learned on the calibration
/// windows with the model frozen (``ImportanceScoring`` runs the training and keeps its scores).
public struct VariationalDropoutCriterion: Criterion {
    public init() {}
    public var name: String { "variational-dropout" }
    public var summary: String { "−log α of a learned Gaussian gate per unit (--vd-steps, --vd-lr, --vd-kl-weight)" }
    public func needs(_ options: CriterionOptions) -> CriterionNeeds { .learned }

    public func scores(
        for group: PruningGroup, parameters: [String: Parameter], statistics: CriterionStatistics,
        options: CriterionOptions, aggregation: Aggregation
    ) throws -> [Double] {
        throw PruneError.notApplicable(
            "variational-dropout scores are learned on calibration data (VariationalDropout), not computed from weights")
    }
}

extension ImportanceCriterion {
    public static let variationalDropout = ImportanceCriterion(rawValue: "variational-dropout")!
}
