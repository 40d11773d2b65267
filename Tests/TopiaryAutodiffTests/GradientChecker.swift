import Foundation
import TopiaryAutodiff
import TopiaryCore
import XCTest

/// Deterministic pseudo-random numbers for tests (SplitMix64).
struct TestRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform(_ lo: Float = -1, _ hi: Float = 1) -> Float {
        lo + (hi - lo) * Float(Double(next() >> 11) / Double(1 << 53))
    }
    mutating func tensor(_ shape: [Int], _ lo: Float = -1, _ hi: Float = 1) -> Tensor {
        Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in uniform(lo, hi) })
    }
}

/// Result of comparing analytic gradients with central finite differences.
struct GradientCheck {
    var worst: Double = 0
    var worstWhere = ""
}

/// Compares ∂L/∂input from `Graph.backward` against central differences of
/// `L = Σ r ⊙ f(inputs)` (the projection and sums in Float64), for every element of every input.
func gradientCheck(
    _ inputs: [Tensor], eps: Float = 1e-2, seed: UInt64 = 7,
    _ f: (Graph, [Var]) throws -> Var
) throws -> GradientCheck {
    // Analytic.
    let params = inputs.enumerated().map { Parameter(name: "x\($0.offset)", value: $0.element.copy()) }
    let g = Graph(recording: true)
    let y = try f(g, params.map { g.parameter($0) })
    var rng = TestRNG(seed: seed)
    let r = rng.tensor(y.shape)
    try g.backward(try g.weightedSum(y, r))

    func loss() throws -> Double {
        let g = Graph()
        let out = try f(g, params.map { g.parameter($0) }).value
        var s = 0.0
        for i in 0..<out.count { s += Double(out[i]) * Double(r[i]) }
        return s
    }
    // Per input: ‖numeric − analytic‖ / ‖numeric‖ (relative error of the whole gradient).
    var result = GradientCheck()
    for (k, p) in params.enumerated() {
        let analytic = p.grad ?? Tensor(zeros: p.shape)
        var diff2 = 0.0, norm2 = 0.0, worstElement = (0, 0.0, Float(0))
        for i in 0..<p.value.count {
            let original = p.value[i]
            p.value[i] = original + eps
            let plus = try loss()
            p.value[i] = original - eps
            let minus = try loss()
            p.value[i] = original
            let numeric = (plus - minus) / (2 * Double(eps))
            let d = numeric - Double(analytic[i])
            diff2 += d * d
            norm2 += numeric * numeric
            if abs(d) >= abs(worstElement.1 - Double(worstElement.2)) { worstElement = (i, numeric, analytic[i]) }
        }
        let err = diff2.squareRoot() / max(norm2.squareRoot(), 1e-6)
        if err >= result.worst {
            result = GradientCheck(
                worst: err,
                worstWhere:
                    "input \(k) (relative error \(err)); worst element \(worstElement.0): numeric \(worstElement.1), analytic "
                    + "\(worstElement.2)"
            )
        }
    }
    return result
}

func assertGradients(
    _ inputs: [Tensor], tolerance: Double = 2e-3, eps: Float = 1e-2, file: StaticString = #filePath, line: UInt = #line,
    _ f: (Graph, [Var]) throws -> Var
) throws {
    let c = try gradientCheck(inputs, eps: eps, f)
    XCTAssertLessThan(c.worst, tolerance, "gradient mismatch at \(c.worstWhere)", file: file, line: line)
}
