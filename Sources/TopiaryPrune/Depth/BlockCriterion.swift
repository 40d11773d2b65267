import Foundation
import TopiaryCore
import TopiaryModels

/// How a whole decoder block is scored for depth pruning (higher = more important = kept).
///
/// Adding one is one file with a conforming type plus one line in ``BlockCriteria/all``; `prune --blocks`, recipes
/// (`stages.prune.block_criterion`) and `--help` take it by name.
public protocol BlockCriterion: Sendable {
    /// The name users type (`--block-criterion NAME`).
    var name: String { get }
    /// One line for `--help`.
    var summary: String { get }
    /// One score per layer of `model`, measured on the calibration windows.
    func scores(model: DecoderModel, calibration: CalibrationSet, progress: ProgressBar?) throws -> [Double]
}

/// The registry of block criteria: the one list of them. The first is the default.
public enum BlockCriteria {
    public static let all: [any BlockCriterion] = [
        BlockPerplexityCriterion(), BlockTaylorCriterion(), BlockInfluenceCriterion(),
    ]

    public static func named(_ name: String) -> (any BlockCriterion)? { all.first { $0.name == name } }
    public static var names: [String] { all.map(\.name) }
}

/// A block criterion by name: what requests, recipes and the command line carry. Only registered names exist.
public struct BlockCriterionName: RegisteredName {
    public static var registeredNames: [String] { BlockCriteria.names }
    public static var kindName: String { "block criterion" }
    public let rawValue: String

    public init?(rawValue: String) {
        guard BlockCriteria.named(rawValue) != nil else { return nil }
        self.rawValue = rawValue
    }

    public var implementation: any BlockCriterion { BlockCriteria.named(rawValue)! }
    /// The perplexity without the block (Shortened LLaMA's recommendation): it measures what the removal does to the
    /// loss directly, and is the one criterion that is never far off on both models we measured (BENCHMARKS.md, "Depth
    /// pruning"): Taylor+ is best on SmolLM2 (7 blocks) but leaves Gemma 3 (4 blocks) at 8 times its perplexity.
    public static let `default` = BlockCriterionName(rawValue: BlockCriteria.all[0].name)!
}
