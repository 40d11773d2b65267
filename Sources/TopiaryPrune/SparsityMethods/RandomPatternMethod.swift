import CTopiaryKernels
import TopiaryAutodiff
import TopiaryCore

/// A random mask shared by every block of 64 rows: each block zeroes the same random columns (a random pattern, the
/// study's "random pattern" control). Ranked per row, so that the rows of a block zero the same columns.
public struct RandomPatternMethod: WeightMetricMethod {
    public init() {}
    public var name: String { "random-pattern" }
    public var perRow: Bool { true }
    public func metric(_ w: Parameter, biases: [String: Parameter], rng: inout SplitMix64) -> Tensor? {
        // One random column score per block of 64 rows, shared by the block's rows.
        let m = Tensor(uninitialized: w.shape)
        let rows = w.shape[0], cols = w.shape[1]
        for start in stride(from: 0, to: rows, by: 64) {
            let pattern = (0..<cols).map { _ in rng.nextFloat() }
            for r in start..<min(rows, start + 64) { (m.pointer + r * cols).update(from: pattern, count: cols) }
        }
        return m
    }
}

extension SparsifyMethod { public static let randomPattern = SparsifyMethod(rawValue: "random-pattern")! }
