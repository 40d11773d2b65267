import CTopiaryKernels
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// Magnitude: Σ |w| over the unit's weights.
public struct L1Criterion: ChannelCriterion {
    public init() {}
    public var name: String { "l1" }
    public var summary: String { "Σ|w| (magnitude)" }
    public func needs(_ options: CriterionOptions) -> CriterionNeeds { [] }

    public func channelScores(_ p: Parameter, axis: Int, statistics: CriterionStatistics, options: CriterionOptions) throws -> [Double] {
        let w = p.value
        let e = Tensor(uninitialized: w.shape)
        for i in 0..<w.count { e[i] = abs(w[i]) }
        return e.sums(keepingAxis: axis)
    }
}

/// Magnitude: √Σ w² over each member's slice of the unit.
public struct L2Criterion: ChannelCriterion {
    public init() {}
    public var name: String { "l2" }
    public var summary: String { "√Σw² (magnitude)" }
    public func needs(_ options: CriterionOptions) -> CriterionNeeds { [] }

    public func channelScores(_ p: Parameter, axis: Int, statistics: CriterionStatistics, options: CriterionOptions) throws -> [Double] {
        let w = p.value
        let e = Tensor(uninitialized: w.shape)
        tk_mul(w.pointer, w.pointer, e.pointer, w.count)
        return e.sums(keepingAxis: axis)
    }

    public func unitScore(_ sum: Double) -> Double { sum.squareRoot() }
}

extension ImportanceCriterion {
    public static let l1 = ImportanceCriterion(rawValue: "l1")!
    public static let l2 = ImportanceCriterion(rawValue: "l2")!
}
