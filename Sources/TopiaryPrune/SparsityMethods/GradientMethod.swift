import CTopiaryKernels
import TopiaryAutodiff
import TopiaryCore

/// Gradient sensitivity: |∂L/∂w| on calibration data (weights the loss is least sensitive to go first).
public struct GradientMethod: GradientMetricMethod {
    public init() {}
    public var name: String { "gradient" }
    public var needs: SparsityNeeds { [.calibration, .gradients] }
    public func metric(_ w: Parameter, statistic g: Tensor) -> Tensor {
        let m = Tensor(uninitialized: w.shape)
        tk_abs(g.pointer, m.pointer, m.count)
        return m
    }
}

extension SparsifyMethod { public static let gradient = SparsifyMethod(rawValue: "gradient")! }
