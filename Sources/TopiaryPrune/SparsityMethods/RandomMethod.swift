import CTopiaryKernels
import TopiaryAutodiff
import TopiaryCore

/// Uniformly random, seeded.
public struct RandomMethod: WeightMetricMethod {
    public init() {}
    public var name: String { "random" }
    public func metric(_ w: Parameter, biases: [String: Parameter], rng: inout SplitMix64) -> Tensor? {
        let m = Tensor(uninitialized: w.shape)
        for i in 0..<m.count { m[i] = rng.nextFloat() }
        return m
    }
}

extension SparsifyMethod { public static let random = SparsifyMethod(rawValue: "random")! }
