import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// First-order Taylor, vector-wise: Σ over the unit's channels of |Σ w·∂L/∂w| along the channel.
public struct TaylorVectorCriterion: ChannelCriterion {
    public init() {}
    public var name: String { "taylor-vector" }
    public var summary: String { "|Σ w·g| per channel (first-order Taylor, vector-wise)" }
    public func needs(_ options: CriterionOptions) -> CriterionNeeds { .gradients }

    public func channelScores(_ p: Parameter, axis: Int, statistics: CriterionStatistics, options: CriterionOptions) throws -> [Double] {
        try TaylorCriterion.products(p).get().sums(keepingAxis: axis).map(abs)
    }
}

extension ImportanceCriterion {
    public static let taylorVector = ImportanceCriterion(rawValue: "taylor-vector")!
}
