import CTopiaryKernels
import TopiaryAutodiff
import TopiaryCore

/// Largest |w| first (the study's "prune by −weights" control).
public struct NegMagnitudeMethod: WeightMetricMethod {
    public init() {}
    public var name: String { "neg-magnitude" }
    public func metric(_ w: Parameter, biases: [String: Parameter], rng: inout SplitMix64) -> Tensor? {
        let m = Tensor(uninitialized: w.shape)
        tk_abs(w.value.pointer, m.pointer, m.count)
        tk_scale(m.pointer, -1, m.pointer, m.count)
        return m
    }
}

extension SparsifyMethod { public static let negMagnitude = SparsifyMethod(rawValue: "neg-magnitude")! }
