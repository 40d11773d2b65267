import CTopiaryKernels
import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// Shortened LLaMA's Taylor+ criterion: Σ |w · ∂L/∂w| over every weight of the block, from one backward of the mean
/// calibration loss — the first-order estimate of what zeroing the block's weights changes.
public struct BlockTaylorCriterion: BlockCriterion {
    public init() {}
    public var name: String { "taylor" }
    public var summary: String { "Σ|w·∂L/∂w| over the block's weights (Shortened LLaMA's Taylor+)" }

    public func scores(model: DecoderModel, calibration set: CalibrationSet, progress: ProgressBar?) throws -> [Double] {
        let layerParameters = model.layers.map(\.all)
        let saved = model.parameters.map { ($0, $0.requiresGrad) }
        defer { for (p, r) in saved { p.requiresGrad = r } }
        Calibration.restrictGradients(model, to: Set(layerParameters.joined().map(\.name)))
        for p in model.parameters { p.zeroGrad() }
        defer { for p in model.parameters { p.zeroGrad() } }
        try Calibration.accumulateGradients(model, set, windowsPerBatch: 1)
        progress?.finish()
        return try layerParameters.map { params in
            try params.reduce(0.0) { sum, p in
                let e = try TaylorCriterion.products(p).get()  // w·∂L/∂w, as the unit-level Taylor criterion forms it
                return sum + tk_asum(e.pointer, e.count)
            }
        }
    }
}

extension BlockCriterionName {
    public static let taylor = BlockCriterionName(rawValue: "taylor")!
}
