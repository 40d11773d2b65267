import CTopiaryKernels
import TopiaryAutodiff
import TopiaryCore

/// Movement: −Σ w·g over calibration gradients (low scores pruned).
public struct MovementMethod: GradientMetricMethod {
    public init() {}
    public var name: String { "movement" }
    public var needs: SparsityNeeds { [.calibration, .gradients] }
    public func metric(_ w: Parameter, statistic g: Tensor) -> Tensor {
        let m = Tensor(uninitialized: w.shape)
        tk_mul(w.value.pointer, g.pointer, m.pointer, m.count)
        tk_scale(m.pointer, -1, m.pointer, m.count)
        return m
    }
}

extension SparsifyMethod { public static let movement = SparsifyMethod(rawValue: "movement")! }
