import CTopiaryKernels
import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// ShortGPT's block influence: 1 − cos(h_in, h_out) of the residual stream across the block, averaged over every
/// calibration token. A block that barely turns the stream scores near 0.
public struct BlockInfluenceCriterion: BlockCriterion {
    public init() {}
    public var name: String { "influence" }
    public var summary: String { "1 − cos(input, output) of the block's residual stream (ShortGPT block influence)" }

    public func scores(model: DecoderModel, calibration set: CalibrationSet, progress: ProgressBar?) throws -> [Double] {
        let layers = model.config.layerCount, d = model.config.hiddenSize
        var sums = [Double](repeating: 0, count: layers)
        var tokens = 0
        for (ids, _) in set.chunks(perPass: 1) {
            let g = Graph(recording: false)
            let steps = try DecoderModel.LayerSteps(model: model, batch: 1, length: set.length)
            var h = try model.embed(g, tokens: ids)
            for l in 0..<layers {
                let out = try model.layer(g, l, h, steps: steps)
                let a = h.value, b = out.value
                for t in 0..<ids.count { sums[l] += 1 - Self.cosine(a.pointer + t * d, b.pointer + t * d, d) }
                h = out
            }
            tokens += ids.count
            progress?.advance(by: 1)
        }
        progress?.finish()
        return sums.map { $0 / Double(tokens) }
    }

    /// cos of two rows of `n` floats (1 when either is zero: nothing turned).
    static func cosine(_ a: UnsafeMutablePointer<Float>, _ b: UnsafeMutablePointer<Float>, _ n: Int) -> Double {
        let aa = tk_sumsq_d(a, n), bb = tk_sumsq_d(b, n)
        return aa == 0 || bb == 0 ? 1 : tk_dot_d(a, b, n) / (aa * bb).squareRoot()
    }
}

extension BlockCriterionName {
    public static let influence = BlockCriterionName(rawValue: "influence")!
}
