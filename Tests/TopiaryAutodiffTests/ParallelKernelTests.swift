import Foundation
@testable import TopiaryAutodiff
import TopiaryCore
import XCTest

/// Ops split their work across threads on large inputs (element ranges, row ranges, attention's (sequence, KV head)
/// pairs). Each op here gets inputs large enough to be split and must give the same values and gradients on two
/// threads as on one; the small shapes of `BackwardRuleTests` run on one thread and check the rules themselves.
final class ParallelKernelTests: XCTestCase {
    var rng = TestRNG(seed: 11)

    /// Worst |a − b| over the tensors, relative to the largest |a|.
    func relativeDifference(_ a: [Tensor], _ b: [Tensor]) -> Float {
        var worst: Float = 0, scale: Float = 1e-12
        for (x, y) in zip(a, b) {
            XCTAssertEqual(x.shape, y.shape)
            for i in 0..<x.count {
                worst = max(worst, abs(x[i] - y[i]))
                scale = max(scale, abs(x[i]))
            }
        }
        return worst / scale
    }

    /// Output and every input gradient of `f` (backward from a random projection of the output) with `threads` threads.
    func run(threads: Int, _ inputs: [Tensor], _ f: (Graph, [Var]) throws -> Var) throws -> [Tensor] {
        let saved = BLAS.threads
        BLAS.threads = threads
        defer { BLAS.threads = saved }
        let params = inputs.enumerated().map { Parameter(name: "x\($0.offset)", value: $0.element.copy()) }
        let g = Graph(recording: true)
        let y = try f(g, params.map { g.parameter($0) })
        var r = TestRNG(seed: 5)
        try g.backward(try g.weightedSum(y, r.tensor(y.shape)))
        return [y.value.copy()] + params.map { $0.grad ?? Tensor(zeros: $0.shape) }
    }

    func assertSameOnOneAndTwoThreads(
        _ inputs: [Tensor], split count: Int, minimum: Int, tolerance: Float = 1e-6,
        file: StaticString = #filePath, line: UInt = #line, _ f: (Graph, [Var]) throws -> Var
    ) throws {
        let saved = BLAS.threads
        BLAS.threads = 2
        XCTAssertEqual(Parallel.rangeCount(count, minimum: minimum), 2, "the input is too small to be split", file: file, line: line)
        BLAS.threads = saved
        let one = try run(threads: 1, inputs, f), two = try run(threads: 2, inputs, f)
        let d = relativeDifference(one, two)
        XCTAssertLessThanOrEqual(d, tolerance, "one thread and two threads differ by \(d)", file: file, line: line)
    }

    func testElementwiseOpsSplitAcrossThreads() throws {
        let n = 3 * Graph.elementMinimum  // 2 ranges of 1.5 × the minimum
        let a = rng.tensor([n / 96, 96], -4, 4), b = rng.tensor([n / 96, 96])
        try assertSameOnOneAndTwoThreads([a], split: n, minimum: Graph.elementMinimum, tolerance: 0) { g, x in g.silu(x[0]) }
        try assertSameOnOneAndTwoThreads([a], split: n, minimum: Graph.elementMinimum, tolerance: 0) { g, x in g.geluTanh(x[0]) }
        try assertSameOnOneAndTwoThreads([a, b], split: n, minimum: Graph.elementMinimum, tolerance: 0) { g, x in try g.mul(x[0], x[1]) }
        try assertSameOnOneAndTwoThreads([a, b], split: n, minimum: Graph.elementMinimum, tolerance: 0) { g, x in try g.add(x[0], x[1]) }
    }

    func testRowwiseOpsSplitAcrossThreads() throws {
        let dim = 128, rows = 3 * Graph.rowMinimum(dim)
        try assertSameOnOneAndTwoThreads(
            [rng.tensor([rows, dim]), rng.tensor([dim], 0.5, 1.5)], split: rows,
            minimum: Graph.rowMinimum(dim), tolerance: 1e-5
        ) { g, x in
            try g.rmsNorm(x[0], x[1], eps: 1e-5)  // ∂w sums partial sums per thread
        }
        let vocab = 1000, tokens = 3 * Graph.rowMinimum(vocab)
        let targets = (0..<tokens).map { $0 % 7 == 0 ? Int32(-100) : Int32(($0 * 37) % vocab) }
        try assertSameOnOneAndTwoThreads(
            [rng.tensor([tokens, vocab], -3, 3)], split: tokens, minimum: Graph.rowMinimum(vocab),
            tolerance: 0
        ) { g, x in try g.crossEntropy(x[0], targets: targets) }
        let heads = 2, headDim = 32, positionsCount = 3 * Graph.rowMinimum(heads * headDim)
        let table = RotaryTable(base: 10000, rotaryDim: headDim, maxPositions: positionsCount)
        let positions = (0..<positionsCount).map { Int32(($0 * 13) % positionsCount) }
        try assertSameOnOneAndTwoThreads(
            [rng.tensor([positionsCount, heads * headDim])], split: positionsCount,
            minimum: Graph.rowMinimum(heads * headDim), tolerance: 0
        ) { g, x in
            try g.rope(x[0], heads: heads, headDim: headDim, positions: positions, table: table)
        }
    }

    func testAttentionPairsSplitAcrossThreads() throws {
        let s = AttentionShape(batch: 2, queryLength: 70, keyLength: 70, heads: 4, kvHeads: 2, headDim: 8)
        let q = rng.tensor([s.batch * s.queryLength, s.heads * s.headDim])
        let k = rng.tensor([s.batch * s.keyLength, s.kvHeads * s.headDim]), v = rng.tensor(k.shape)
        // BLAS may round differently with one thread than with two inside one GEMM; the pairs themselves are exact.
        try assertSameOnOneAndTwoThreads([q, k, v], split: s.batch * s.kvHeads, minimum: 1, tolerance: 1e-5) { g, x in
            try g.attention(x[0], x[1], x[2], shape: s)
        }
    }

    /// The comparison can fail: a different computation on two threads is caught.
    func testTheComparisonSeesADifference() throws {
        let a = rng.tensor([4, 8])
        let one = try run(threads: 1, [a]) { g, x in g.silu(x[0]) }
        let other = try run(threads: 2, [a]) { g, x in g.geluTanh(x[0]) }
        XCTAssertGreaterThan(relativeDifference(one, other), 1e-3)
    }
}
