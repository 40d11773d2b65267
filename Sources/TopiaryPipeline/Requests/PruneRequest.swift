import Foundation
import TopiaryModels
import TopiaryPrune

/// Calibration windows taken from a text file (default: WikiText-2 test under the data folder, from token 32,768,
/// past the 64 × 512 evaluation windows).
public struct CalibrationConfig: Codable, Sendable, Equatable {
    public var file: String?
    public var windows: Int
    public var length: Int
    public var offset = 32768

    public init(file: String? = nil, windows: Int, length: Int, offset: Int = 32768) {
        self.file = file
        self.windows = windows
        self.length = length
        self.offset = offset
    }

    public func validate() throws {
        try Require.inRange(windows, "windows", 1...100_000)
        // Upper bounds of lengths are the model's context and the memory (checked by the workflows once the model is known).
        try Require.inRange(length, "length", 2...(1 << 24))
        try Require.inRange(offset, "offset", 0...Int(Int32.max))
    }
}

/// How the groups are ranked: the importance stage of a recipe, the scoring half of `topiary prune`.
public struct ImportanceConfig: Codable, Sendable, Equatable {
    /// The best criterion Topiary knows at 20% structured (BENCHMARKS.md): `obs` — OBS saliency with the update, chosen
    /// layer by layer. `taylor` stays available by name as LLM-Pruner's baseline.
    public var criterion: ImportanceCriterion = .obs
    public var aggregation: Aggregation = .sum
    public var calibration = ImportanceConfig.defaultCalibration(for: .obs)

    /// The calibration a criterion gets when none is given: 32 windows of 512 tokens for the second-order criteria
    /// (obs, taylor2, variational dropout: they gain most from more data), LLM-Pruner's 10 × 128 for the others.
    public static func defaultCalibration(for criterion: ImportanceCriterion) -> CalibrationConfig {
        [.obs, .taylor2, .variationalDropout].contains(criterion)
            ? CalibrationConfig(windows: 32, length: 512) : CalibrationConfig(windows: 10, length: 128)
    }
    public var seed: UInt64 = 0
    /// The criteria's settings (λ, Taylor order, variational dropout, OBS step); nil: the defaults (and out of the
    /// stage key, so recipes without them keep their checkpoints).
    public var options: CriterionOptions?

    public init() {}

    /// The settings the criterion runs with (the recipe's seed included).
    public var criterionOptions: CriterionOptions {
        var o = options ?? CriterionOptions()
        o.seed = seed
        return o
    }

    /// `options` as given, or nil where they are the defaults.
    public mutating func setOptions(_ o: CriterionOptions) {
        var plain = o
        plain.seed = CriterionOptions().seed
        options = plain == CriterionOptions() ? nil : plain
    }

    public func validate() throws {
        let o = criterionOptions
        try Require.that(o.lambda.isFinite && abs(o.lambda) <= 100, "lambda", o.lambda, "is outside [-100, 100]")
        try Require.that(o.taylorOrder == 1 || o.taylorOrder == 2, "taylor_order", o.taylorOrder, "must be 1 or 2")
        try Require.inRange(o.vdSteps, "vd_steps", 1...1_000_000)
        try Require.inRange(o.vdWindows, "vd_windows", 1...100_000)
        try Require.that(o.vdLearningRate > 0 && o.vdLearningRate <= 100, "vd_lr", o.vdLearningRate, "must be in (0, 100]")
        try Require.that(o.vdKLWeight >= 0 && o.vdKLWeight <= 1e6, "vd_kl_weight", o.vdKLWeight, "must be in [0, 1e6]")
        try Require.inRange(o.obsStep, "obs_step", 1...65_536)
        try Require.part("calibration") { try calibration.validate() }
    }

    /// What the criterion needs from a calibration pass.
    public var needs: CriterionNeeds { criterion.needs(criterionOptions) }
    /// Whether the criterion chooses units while they are removed (obs): no scores ahead of the prune.
    public var isSequential: Bool { needs.contains(.sequential) }
}

/// Which groups go and how many: the prune stage of a recipe, the removal half of `topiary prune`.
public struct PruneConfig: Codable, Sendable, Equatable {
    public static let defaultSearchEvaluations = 40
    public static let defaultSearchWindows = 4
    /// After the 64 evaluation windows of 512 tokens and 16 more (past the default calibration windows).
    public static let defaultSearchOffset = 40960

    public var ratio: Double
    /// `A-B` (inclusive) or `all`.
    public var layers: String
    public var mode: StructuredPruner.Mode = .uniform
    public var roundTo = 1
    /// How kept MLP widths meet `round_to`: `nearest` (nil; each layer on its own, LLM-Pruner) or `budget` (across
    /// layers, so that the plan still removes `ratio`).
    public var rounding: StructuredPruner.Rounding?
    /// `uniform` (nil) or `search`: per-layer shares learned by ``LayerRatioSearch`` (optional fields stay out of the
    /// stage key when unset, so recipes without them keep their checkpoints).
    public var allocation: String?
    public var searchEvaluations: Int?
    public var searchWindows: Int?
    public var searchOffset: Int?
    /// `remove` (nil) or `kmeans`: MLP channels merged by k-means instead of removed.
    public var merge: String?
    /// The OBS update of the linears reading the removed units (``StructuredOBS``); nil: on for criterion `obs`, off
    /// otherwise.
    public var compensate: Bool?
    /// Whole decoder blocks removed before the width prune (depth pruning); nil: none. `ratio` is then the budget of
    /// the whole plan (blocks and width together) and the width prune removes what the blocks leave of it; a ratio of 0
    /// removes the blocks alone.
    public var blocks: Int?
    /// How the blocks are scored; nil: ``BlockCriterionName/default`` (the perplexity without the block).
    public var blockCriterion: BlockCriterionName?
    /// nil: ``BlockSelection/default`` (`one-shot`), or `iterative` (one block at a time, rescored after each).
    public var blockSelection: BlockSelection?

    public init(ratio: Double, layers: String) {
        self.ratio = ratio
        self.layers = layers
    }

    public var searches: Bool { allocation == "search" }
    /// Whether whole blocks go.
    public var removesBlocks: Bool { (blocks ?? 0) > 0 }
    /// Whether anything is removed by width (units of heads and MLP channels).
    public var removesWidth: Bool { ratio > 0 || !removesBlocks }
    public var mergesByKMeans: Bool { merge == "kmeans" }

    /// The layer range `layers` names in a model of `layerCount` layers.
    public func layerRange(layerCount: Int) throws -> ClosedRange<Int> {
        layers == "all" ? 0...(layerCount - 1) : try StructuredPruner.parseLayers(layers, layerCount: layerCount)
    }

    public func validate() throws {
        try Require.halfOpen(ratio, "ratio", 0, 1)
        if layers != "all" {
            let parts = layers.split(separator: "-", omittingEmptySubsequences: false).map {
                Int($0.trimmingCharacters(in: .whitespaces))
            }
            try Require.that(
                (parts.count == 1 || parts.count == 2) && parts.allSatisfy({ $0 != nil && $0! >= 0 }) && parts.first!! <= parts.last!!,
                "layers", layers, "must be `all` or a range A-B of layer indices (e.g. 3-27)")
        }
        try Require.inRange(roundTo, "round_to", 1...4096)
        if rounding == .budget {
            try Require.that(
                roundTo > 1 && mode == .uniform, "rounding", "budget",
                "rounds kept widths to {round_to} in {mode} uniform: give round_to > 1")
        }
        try Require.that([nil, "uniform", "search"].contains(allocation), "allocation", allocation, "must be uniform or search")
        try Require.that([nil, "remove", "kmeans"].contains(merge), "merge", merge, "must be remove or kmeans")
        if let v = searchEvaluations { try Require.inRange(v, "search_evaluations", 1...10_000) }
        if let v = searchWindows { try Require.inRange(v, "search_windows", 1...1024) }
        if let v = searchOffset { try Require.inRange(v, "search_offset", 0...100_000_000) }
        if let v = blocks { try Require.inRange(v, "blocks", 1...ModelConfig.maxLayers) }
        if blockCriterion != nil || blockSelection != nil {
            try Require.that(removesBlocks, "blocks", nil, "{block_criterion} and {block_selection} choose whole blocks: give {blocks} too")
        }
        if compensate == true {
            try Require.that(
                !searches && !mergesByKMeans, "compensate", nil, "{compensate} works with {allocation} uniform and {merge} remove")
        }
        if searches {
            try Require.that(
                mode == .uniform, "allocation", nil, "{allocation} search learns per-layer shares of the budget: it needs {mode} uniform")
        }
    }
}

/// A whole structured prune: the importance criterion and the removal (what `topiary prune` runs, and a recipe's
/// importance and prune stages together).
public struct PruneRequest: Codable, Sendable, Equatable {
    public var importance: ImportanceConfig
    public var prune: PruneConfig

    public init(importance: ImportanceConfig, prune: PruneConfig) {
        self.importance = importance
        self.prune = prune
    }

    /// Whether the linears reading the removed units get the OBS update (default: with a sequential criterion).
    public var compensates: Bool { prune.compensate ?? importance.isSequential }

    public func validate() throws {
        try Require.part("importance") { try importance.validate() }
        try Require.part("prune") { try prune.validate() }
        if importance.isSequential {
            try Require.that(
                prune.mode == .uniform && !prune.searches && !prune.mergesByKMeans, "prune", nil,
                "{importance.criterion} `\(importance.criterion.rawValue)` chooses units layer by layer: it needs {prune.mode} uniform, "
                    + "{prune.allocation} uniform and {prune.merge} remove (name another {importance.criterion}, e.g. taylor2, for those)")
        }
    }
}
