import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// Shortened LLaMA's PPL criterion: the calibration perplexity of the model with the block taken out. The block whose
/// absence costs least scores lowest. One forward over the calibration windows per block.
public struct BlockPerplexityCriterion: BlockCriterion {
    public init() {}
    public var name: String { "perplexity" }
    public var summary: String { "calibration perplexity with the block removed (Shortened LLaMA; the default)" }

    public func scores(model: DecoderModel, calibration set: CalibrationSet, progress: ProgressBar?) throws -> [Double] {
        // Windows run together (up to 8 per forward: bigger products, the same numbers).
        let chunks = set.chunks(perPass: 8)
        let scores = try (0..<model.config.layerCount).map { l in
            let shallower = try model.skippingLayers([l])
            var loss = 0.0
            for (ids, n) in chunks {
                let g = Graph(recording: false)
                let logits = try shallower.forward(g, tokens: ids, batch: n)
                loss += Double(try g.crossEntropy(logits, targets: set.targets(for: ids[...], windows: n)).value[0]) * Double(n)
            }
            progress?.advance(by: 1)
            return exp(loss / Double(set.windows))
        }
        progress?.finish()
        return scores
    }
}

extension BlockCriterionName {
    public static let perplexity = BlockCriterionName(rawValue: "perplexity")!
}
