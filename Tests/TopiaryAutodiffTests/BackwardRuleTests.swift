import Foundation
@testable import TopiaryAutodiff
import TopiaryCore
import XCTest

/// Every backward rule against central finite differences on small random shapes.
final class BackwardRuleTests: XCTestCase {
    var rng = TestRNG(seed: 42)

    func testLinear() throws {
        try assertGradients([rng.tensor([2, 3, 5]), rng.tensor([4, 5])]) { g, x in try g.linear(x[0], x[1]) }
    }

    func testMatmulPlainAndTransposed() throws {
        try assertGradients([rng.tensor([2, 3, 4]), rng.tensor([2, 4, 5])]) { g, x in try g.matmul(x[0], x[1]) }
        try assertGradients([rng.tensor([2, 3, 4]), rng.tensor([2, 5, 4])]) { g, x in try g.matmul(x[0], x[1], transB: true) }
    }

    func testEmbeddingScatterAddsRepeatedIds() throws {
        try assertGradients([rng.tensor([6, 3])]) { g, x in try g.embedding(x[0], ids: [1, 4, 1, 0, 5]) }
    }

    func testRMSNormInputAndWeight() throws {
        try assertGradients([rng.tensor([3, 8]), rng.tensor([8], 0.5, 1.5)]) { g, x in try g.rmsNorm(x[0], x[1], eps: 1e-5) }
        try assertGradients([rng.tensor([3, 8]), rng.tensor([8])]) { g, x in
            try g.rmsNorm(x[0], x[1], eps: 1e-6, weightOffset: 1)
        }
    }

    func testGroupedRMSNormInputAndSharedWeight() throws {
        try assertGradients([rng.tensor([3, 12]), rng.tensor([4], 0.5, 1.5)]) { g, x in
            try g.groupedRMSNorm(x[0], x[1], groupSize: 4, eps: 1e-6)
        }
    }

    func testLayerNormAndBias() throws {
        try assertGradients([rng.tensor([3, 8]), rng.tensor([8]), rng.tensor([8])]) { g, x in
            try g.layerNorm(x[0], x[1], x[2], eps: 1e-5)
        }
        try assertGradients([rng.tensor([2, 3, 4]), rng.tensor([4])]) { g, x in try g.addBias(x[0], x[1]) }
    }

    func testActivations() throws {
        try assertGradients([rng.tensor([4, 7], -4, 4)]) { g, x in g.silu(x[0]) }
        try assertGradients([rng.tensor([4, 7], -4, 4)]) { g, x in g.geluTanh(x[0]) }
        try assertGradients([rng.tensor([4, 7], -4, 4)]) { g, x in g.geluErf(x[0]) }
        try assertGradients([rng.tensor([3, 6], -3, 3)]) { g, x in g.softmax(x[0]) }
    }

    func testElementwise() throws {
        try assertGradients([rng.tensor([3, 4]), rng.tensor([3, 4])]) { g, x in try g.add(x[0], x[1]) }
        try assertGradients([rng.tensor([3, 4]), rng.tensor([3, 4])]) { g, x in try g.mul(x[0], x[1]) }
        try assertGradients([rng.tensor([3, 4])]) { g, x in g.scale(x[0], -2.5) }
        // The same value used twice: gradients from both uses add up.
        try assertGradients([rng.tensor([3, 4])]) { g, x in try g.mul(x[0], g.add(x[0], x[0])) }
    }

    func testGaussianGate() throws {
        var noise = rng.tensor([3, 6])
        // Columns 0-1 → unit 2, 2-3 → unit 0, 4-5 → unit 1.
        try assertGradients([rng.tensor([3, 6]), rng.tensor([3], -2, 1)]) { g, x in
            try g.gaussianGate(x[0], logAlpha: x[1], noise: noise, unitOfColumn: [2, 2, 0, 0, 1, 1])
        }
        noise = rng.tensor([2, 2, 4])
        try assertGradients([rng.tensor([2, 2, 4]), rng.tensor([4], -1, 1)]) { g, x in
            try g.gaussianGate(x[0], logAlpha: x[1], noise: noise, unitOfColumn: [0, 1, 2, 3])
        }
    }

    func testShapeOps() throws {
        try assertGradients([rng.tensor([2, 3, 4])]) { g, x in try g.reshape(x[0], [6, 4]) }
        try assertGradients([rng.tensor([2, 3, 4])]) { g, x in try g.transpose(x[0], 0, 2) }
        try assertGradients([rng.tensor([2, 3, 4])]) { g, x in try g.transpose(x[0], 1, 2) }
        try assertGradients([rng.tensor([2, 5, 3])]) { g, x in try g.slice(x[0], axis: 1, 1..<4) }
        try assertGradients([rng.tensor([2, 2, 3]), rng.tensor([2, 4, 3])]) { g, x in try g.concat([x[0], x[1]], axis: 1) }
    }

    func testRope() throws {
        let table = RotaryTable(base: 10_000, rotaryDim: 8, maxPositions: 16)
        try assertGradients([rng.tensor([3, 2 * 8])]) { g, x in
            try g.rope(x[0], heads: 2, headDim: 8, positions: [0, 5, 11], table: table)
        }
    }

    func testCausalGroupedQueryAttention() throws {
        let s = AttentionShape(batch: 2, queryLength: 5, keyLength: 5, heads: 4, kvHeads: 2, headDim: 3)
        try assertGradients([rng.tensor([10, 12]), rng.tensor([10, 6]), rng.tensor([10, 6])]) { g, x in
            try g.attention(x[0], x[1], x[2], shape: s)
        }
    }

    func testAttentionVariants() throws {
        var s = AttentionShape(batch: 1, queryLength: 70, keyLength: 70, heads: 2, kvHeads: 1, headDim: 2)
        s.window = 3  // sliding window, and more rows than one query tile
        try assertGradients([rng.tensor([70, 4]), rng.tensor([70, 2]), rng.tensor([70, 2])]) { g, x in
            try g.attention(x[0], x[1], x[2], shape: s)
        }
        // Causal over two query tiles, queries at the end of a longer key sequence (the backward spans each
        // tile's visible keys only).
        let offset = AttentionShape(batch: 1, queryLength: 66, keyLength: 70, heads: 2, kvHeads: 1, headDim: 2)
        try assertGradients([rng.tensor([66, 4]), rng.tensor([70, 2]), rng.tensor([70, 2])]) { g, x in
            try g.attention(x[0], x[1], x[2], shape: offset)
        }
        let bidirectional = AttentionShape(batch: 1, queryLength: 3, keyLength: 4, heads: 2, kvHeads: 2, headDim: 2, causal: false)
        try assertGradients([rng.tensor([3, 4]), rng.tensor([4, 4]), rng.tensor([4, 4])]) { g, x in
            try g.attention(x[0], x[1], x[2], shape: bidirectional)
        }
    }

    func testCrossEntropyWithIgnoredRows() throws {
        try assertGradients([rng.tensor([4, 6], -2, 2)]) { g, x in try g.crossEntropy(x[0], targets: [2, -100, 5, 0]) }
        try assertGradients([rng.tensor([5])]) { g, x in g.sum(x[0]) }
    }

    // MARK: the checker itself can fail

    func testCheckerCatchesAWrongBackwardRule() throws {
        // A deliberately wrong rule (SiLU's derivative replaced by sigmoid) must be reported.
        let c = try gradientCheck([rng.tensor([3, 4], -3, 3)]) { g, x in
            let y = Tensor(uninitialized: x[0].shape)
            for i in 0..<y.count { let v = x[0].value[i]; y[i] = v / (1 + exp(-v)) }
            let xv = x[0].value
            return g.record(.silu, [x[0]], output: y) { dy, _ in
                let dx = Tensor(uninitialized: xv.shape)
                for i in 0..<dx.count { dx[i] = dy[i] / (1 + exp(-xv[i])) }
                return [dx]
            }
        }
        XCTAssertGreaterThan(c.worst, 0.05, "a wrong backward rule went unnoticed")
    }

    // MARK: errors

    func testShapeMismatchNamesTheOp() {
        let g = Graph(recording: true)
        let a = g.input(Tensor(zeros: [2, 3])), w = g.input(Tensor(zeros: [4, 5]))
        XCTAssertThrowsError(try g.linear(a, w)) { error in
            XCTAssertEqual(error as? AutodiffError, .shapeMismatch(op: "linear", shapes: [[2, 3], [4, 5]]))
            XCTAssertTrue(error.localizedDescription.hasPrefix("linear:"))
        }
        XCTAssertThrowsError(try g.add(a, w)) { XCTAssertEqual(($0 as? AutodiffError).map { "\($0)" }?.contains("add"), true) }
    }

    func testCachedAttentionHasNoBackwardRule() throws {
        let g = Graph(recording: true)
        let p = Parameter(name: "q", value: Tensor(zeros: [1, 4]))
        let q = g.parameter(p)
        let cache = KVCache(batch: 1, capacity: 4, kvWidths: [4])
        XCTAssertThrowsError(try g.attention(q, q, q, cache: cache, layer: 0, heads: 2, kvHeads: 2, headDim: 2)) {
            XCTAssertEqual($0 as? AutodiffError, .noBackwardRule(op: "attention with a KV cache"))
        }
    }

    func testGradientsAccumulateAcrossBackwardCalls() throws {
        let w = Parameter(name: "w", value: rng.tensor([3, 2]))
        let x = rng.tensor([4, 2])
        var norms: [Float] = []
        for _ in 0..<2 {
            let g = Graph(recording: true)
            try g.backward(g.sum(g.linear(g.input(x), g.parameter(w))))
            norms.append(BLAS.nrm2(n: 6, x: w.grad!.pointer))
        }
        XCTAssertEqual(norms[1], 2 * norms[0], accuracy: 1e-5)
    }

    func testFrozenParameterGetsNoGradient() throws {
        let w = Parameter(name: "w", value: rng.tensor([3, 2]), requiresGrad: false)
        let x = Parameter(name: "x", value: rng.tensor([4, 2]))
        let g = Graph(recording: true)
        try g.backward(g.sum(g.linear(g.parameter(x), g.parameter(w))))
        XCTAssertNil(w.grad)
        XCTAssertNotNil(x.grad)
    }
}
