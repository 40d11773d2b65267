import CTopiaryKernels
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// First-order Taylor, element-wise: Σ |w·∂L/∂w| over the unit's weights (LLM-Pruner's element-wise plan).
public struct TaylorCriterion: ChannelCriterion {
    public init() {}
    public var name: String { "taylor" }
    public var summary: String { "Σ|w·g| (first-order Taylor, element-wise; LLM-Pruner's plan)" }
    public func needs(_ options: CriterionOptions) -> CriterionNeeds { .gradients }

    public func channelScores(_ p: Parameter, axis: Int, statistics: CriterionStatistics, options: CriterionOptions) throws -> [Double] {
        try TaylorCriterion.products(p).map { e in
            for i in 0..<e.count { e[i] = abs(e[i]) }
            return e.sums(keepingAxis: axis)
        }.get()
    }

    /// w·∂L/∂w element by element.
    static func products(_ p: Parameter) -> Result<Tensor, Error> {
        guard let g = p.grad else { return .failure(PruneError.missingGradient(p.name)) }
        let w = p.value
        let e = Tensor(uninitialized: w.shape)
        tk_mul(w.pointer, g.pointer, e.pointer, w.count)
        return .success(e)
    }
}

extension ImportanceCriterion {
    public static let taylor = ImportanceCriterion(rawValue: "taylor")!
}
