import CTopiaryKernels
import TopiaryAutodiff
import TopiaryCore

/// Smallest |w| first, per weight matrix.
public struct MagnitudeMethod: WeightMetricMethod {
    public init() {}
    public var name: String { "magnitude" }
    public func metric(_ w: Parameter, biases: [String: Parameter], rng: inout SplitMix64) -> Tensor? {
        let m = Tensor(uninitialized: w.shape)
        tk_abs(w.value.pointer, m.pointer, m.count)
        return m
    }
}

extension SparsifyMethod { public static let magnitude = SparsifyMethod(rawValue: "magnitude")! }
