import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels

/// Topiary's structured indicator, OBS saliency of whole units (``StructuredOBS``): computed layer by layer on the
/// calibration inputs that pass through the already-pruned layers, with the OBS update of the linear reading the units.
/// Not a static score: pruning runs it as its own driver.
public struct OBSCriterion: Criterion {
    public init() {}
    public var name: String { "obs" }
    public var summary: String { "Optimal Brain Surgeon saliency, layer by layer, with the update (Topiary's; --obs-step)" }
    public func needs(_ options: CriterionOptions) -> CriterionNeeds { .sequential }

    public func scores(
        for group: PruningGroup, parameters: [String: Parameter], statistics: CriterionStatistics,
        options: CriterionOptions, aggregation: Aggregation
    ) throws -> [Double] {
        throw PruneError.notApplicable("obs scores are computed layer by layer while pruning (StructuredOBS), not ahead of it")
    }
}

extension ImportanceCriterion {
    public static let obs = ImportanceCriterion(rawValue: "obs")!
}
