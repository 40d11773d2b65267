import CTopiaryKernels
import TopiaryAutodiff
import TopiaryCore

/// Gradient-based first-order Taylor: |w·∂L/∂w| (the loss change of zeroing w, to first order).
public struct TaylorMethod: GradientMetricMethod {
    public init() {}
    public var name: String { "taylor" }
    public var needs: SparsityNeeds { [.calibration, .gradients] }
    public func metric(_ w: Parameter, statistic g: Tensor) -> Tensor {
        let m = Tensor(uninitialized: w.shape)
        tk_mul(w.value.pointer, g.pointer, m.pointer, m.count)
        tk_abs(m.pointer, m.pointer, m.count)
        return m
    }
}

extension SparsifyMethod { public static let taylor = SparsifyMethod(rawValue: "taylor")! }
