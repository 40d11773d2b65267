import CTopiaryKernels
import TopiaryAutodiff
import TopiaryCore

/// Whole output rows of each matrix by their L1 norm (row-structured inside unstructured counting).
public struct L1RowsMethod: WeightMetricMethod {
    public init() {}
    public var name: String { "l1-rows" }
    public func metric(_ w: Parameter, biases: [String: Parameter], rng: inout SplitMix64) -> Tensor? {
        // Every weight of a row scores the row's L1 norm: whole rows go, the weakest first.
        let m = Tensor(uninitialized: w.shape)
        let cols = w.shape[1]
        for r in 0..<w.shape[0] {
            let norm = Float(tk_asum(w.value.pointer + r * cols, cols))
            (m.pointer + r * cols).update(repeating: norm, count: cols)
        }
        return m
    }
}

extension SparsifyMethod { public static let l1Rows = SparsifyMethod(rawValue: "l1-rows")! }
