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
        BlockTaylorCriterion(), BlockPerplexityCriterion(), BlockInfluenceCriterion(),
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
    /// Taylor+, chosen one-shot: on SmolLM2 with 7 of 30 blocks removed (BENCHMARKS.md) it leaves the lowest
    /// perplexity of the three criteria, in a tenth of the perplexity criterion's time.
    public static let `default` = BlockCriterionName(rawValue: BlockCriteria.all[0].name)!
}
