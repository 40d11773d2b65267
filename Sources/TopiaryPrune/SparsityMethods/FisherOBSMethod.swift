import Foundation
import CTopiaryKernels
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// Topiary's unstructured indicator: SparseGPT's layer-by-layer OBS reconstruction, with its mask chosen by the OBS
/// saliency w²/[H⁻¹]_jj² weighted by how much the loss cares about each output row, cᵣ^γ with cᵣ = Σⱼ Fᵣⱼ (the row's
/// Fisher mass, F = Σ over calibration windows of (∂Lₛ/∂w)², one backward per window on the dense model). Activations
/// give the within-row ranking and the update, gradients the between-row one; γ = 0 is SparseGPT.
public struct FisherOBSMethod: SparsityMethodImplementation {
    public init() {}
    public var name: String { "fisher-obs" }
    public var needs: SparsityNeeds { [.calibration, .fisher] }
    public var inputStatistic: InputStatistic? { .hessian }
    public func run(_ s: Sparsifier, model: DecoderModel, calibration: CalibrationSet?, progress: ProgressBar?) throws {
        guard let calibration else { throw PruneError.calibration("--method \(name) needs calibration data (--calibration FILE)") }
        let fisher = try s.precomputed ?? s.denseStatistics(model: model, calibration: calibration)
        var weighted = s
        for layer in model.layers {
            for w in Sparsifier.linears(layer) {
                guard let f = fisher[w.name] else { throw PruneError.missingGradient(w.name) }
                let mass = f.sums(keepingAxis: 0)
                let mean = max(mass.reduce(0, +) / Double(max(1, mass.count)), 1e-300)
                weighted.rowWeights[w.name] = mass.map { Float(pow(max($0 / mean, 1e-12), s.rowSensitivityPower)) }
            }
        }
        try weighted.sequential(model: model, calibration: calibration, progress: progress)
    }
}

extension SparsifyMethod { public static let fisherOBS = SparsifyMethod(rawValue: "fisher-obs")! }
