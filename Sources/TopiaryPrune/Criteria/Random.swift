import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels

/// Uniform random scores (a baseline), seeded.
public struct RandomCriterion: Criterion {
    public init() {}
    public var name: String { "random" }
    public var summary: String { "uniform random scores (a baseline; --seed)" }
    public func needs(_ options: CriterionOptions) -> CriterionNeeds { [] }

    public func scores(
        for group: PruningGroup, parameters: [String: Parameter], statistics: CriterionStatistics,
        options: CriterionOptions, aggregation: Aggregation
    ) throws -> [Double] {
        var rng = SplitMix64(seed: options.seed &+ UInt64(group.id) &* 0x9E37_79B9)
        return (0..<group.units).map { _ in rng.nextDouble() }
    }
}

extension ImportanceCriterion {
    public static let random = ImportanceCriterion(rawValue: "random")!
}
