import CTopiaryKernels
import TopiaryAutodiff
import TopiaryCore

/// EWC-style: the Fisher-weighted squared distance ½·F·w² of setting w to 0, F = Σ over calibration windows of
/// (∂Lₛ/∂w)² (one backward per window). This is the optimal-brain-damage saliency with the Fisher as the Hessian
/// diagonal — the element-wise second-order Taylor term (`taylor2` of the structured pruner) per weight.
public struct EWCMethod: GradientMetricMethod {
    public init() {}
    public var name: String { "ewc" }
    public var needs: SparsityNeeds { [.calibration, .fisher] }
    public func metric(_ w: Parameter, statistic g: Tensor) -> Tensor {
        let m = Tensor(uninitialized: w.shape)
        m.pointer.update(from: g.pointer, count: m.count)
        return m
    }
}

extension SparsifyMethod { public static let ewc = SparsifyMethod(rawValue: "ewc")! }
