import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// Second-order Taylor with the Fisher diagonal: Σ ½ Σₛ (w·∂Lₛ/∂w)² over samples s (one backward per window).
public struct Taylor2Criterion: ChannelCriterion {
    public init() {}
    public var name: String { "taylor2" }
    public var summary: String { "Fisher ½Σ(w·g)² per window (second-order Taylor)" }
    public func needs(_ options: CriterionOptions) -> CriterionNeeds { .fisher }

    public func channelScores(_ p: Parameter, axis: Int, statistics: CriterionStatistics, options: CriterionOptions) throws -> [Double] {
        guard let f = statistics.fisher[p.name] else { throw PruneError.missingGradient(p.name) }
        return f.sums(keepingAxis: axis)
    }
}

extension ImportanceCriterion {
    public static let taylor2 = ImportanceCriterion(rawValue: "taylor2")!
}
