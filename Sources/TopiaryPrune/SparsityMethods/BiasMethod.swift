import CTopiaryKernels
import TopiaryAutodiff
import TopiaryCore

/// By bias magnitude: each biased linear (Qwen2's q/k/v) loses the rows with the smallest |bias| until the target is
/// met; linears without a bias stay dense. Only for models with biases.
public struct BiasMethod: WeightMetricMethod {
    public init() {}
    public var name: String { "bias" }
    public var needs: SparsityNeeds { .biases }
    public func metric(_ w: Parameter, biases: [String: Parameter], rng: inout SplitMix64) -> Tensor? {
        Self.rowsByBias(w, biases: biases, sign: 1)
    }

    /// A row's weights all score its bias magnitude (times `sign`); a linear without a bias is left dense.
    static func rowsByBias(_ w: Parameter, biases: [String: Parameter], sign: Float) -> Tensor? {
        guard let b = biases[w.name] else { return nil }
        let m = Tensor(uninitialized: w.shape)
        let cols = w.shape[1]
        for r in 0..<w.shape[0] { (m.pointer + r * cols).update(repeating: sign * abs(b.value[r]), count: cols) }
        return m
    }
}

extension SparsifyMethod { public static let bias = SparsifyMethod(rawValue: "bias")! }
