import CTopiaryKernels
import TopiaryAutodiff
import TopiaryCore

/// The control of `bias`: rows with the largest |bias| first.
public struct NegBiasMethod: WeightMetricMethod {
    public init() {}
    public var name: String { "neg-bias" }
    public var needs: SparsityNeeds { .biases }
    public func metric(_ w: Parameter, biases: [String: Parameter], rng: inout SplitMix64) -> Tensor? {
        BiasMethod.rowsByBias(w, biases: biases, sign: -1)
    }
}

extension SparsifyMethod { public static let negBias = SparsifyMethod(rawValue: "neg-bias")! }
