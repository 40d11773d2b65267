import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import XCTest

final class StructuredOBSTests: XCTestCase {
    /// Calibration inputs `x` (`[T, n]`), their Σ x xᵀ as the upper triangle of a Float `[n, n]`, and a weight `[rows, n]`.
    func problem(rows: Int, n: Int, tokens: Int, seed: UInt64) -> (x: [[Double]], h: Tensor, w: Tensor) {
        var rng = SplitMix64(seed: seed)
        // Correlated columns (a random mixing of independent ones), so removals are not trivially independent.
        let mix = (0..<n).map { _ in (0..<n).map { _ in rng.nextDouble() * 2 - 1 } }
        let x = (0..<tokens).map { _ -> [Double] in
            let z = (0..<n).map { _ in rng.nextDouble() * 2 - 1 }
            return (0..<n).map { j in (0..<n).reduce(0) { $0 + mix[j][$1] * z[$1] } }
        }
        let h = Tensor(zeros: [n, n])
        for i in 0..<n { for j in i..<n { h[i * n + j] = Float(x.reduce(0) { $0 + $1[i] * $1[j] }) } }
        let w = Tensor(shape: [rows, n], values: (0..<(rows * n)).map { _ in rng.nextFloat(-1, 1) })
        return (x, h, w)
    }

    /// The least-squares best weight on the kept columns K (`[rows, |K|]`) and its output error ‖X Wᵀ − X_K W'ᵀ‖².
    func leastSquares(x: [[Double]], w: Tensor, keep: [Int]) -> (weight: [[Double]], error: Double) {
        let rows = w.shape[0], n = w.shape[1], k = keep.count
        let y = x.map { xt in (0..<rows).map { r in (0..<n).reduce(0) { $0 + Double(w[r * n + $1]) * xt[$1] } } }
        // Normal equations (X_Kᵀ X_K) B = X_Kᵀ Y by Gauss–Jordan with partial pivoting.
        var a = (0..<k).map { i in
            (0..<k).map { j in x.reduce(0) { $0 + $1[keep[i]] * $1[keep[j]] } }
                + (0..<rows).map { r in zip(x, y).reduce(0) { $0 + $1.0[keep[i]] * $1.1[r] } }
        }
        for c in 0..<k {
            let p = (c..<k).max { abs(a[$0][c]) < abs(a[$1][c]) }!
            a.swapAt(c, p)
            let d = a[c][c]
            a[c] = a[c].map { $0 / d }
            for i in 0..<k where i != c { let f = a[i][c]; a[i] = zip(a[i], a[c]).map { $0 - f * $1 } }
        }
        let b = (0..<rows).map { r in (0..<k).map { a[$0][k + r] } }  // [rows, k]
        var error = 0.0
        for (xt, yt) in zip(x, y) {
            for r in 0..<rows { let e = yt[r] - (0..<k).reduce(0) { $0 + b[r][$1] * xt[keep[$1]] }; error += e * e }
        }
        return (b, error)
    }

    /// OBS saliency is the exact least-squares error of removing the unit, the greedy step picks the unit a brute force
    /// picks, and the update is the least-squares best weight on the rest — for single columns and for blocks.
    func testSaliencyAndUpdateAreTheLeastSquaresOptimum() throws {
        let rows = 5, n = 8
        let (x, h, w) = problem(rows: rows, n: n, tokens: 60, seed: 3)
        for units in [(0..<n).map { [$0] }, [[0, 1], [2, 3], [4, 5], [6, 7]], [[0, 5], [1, 2, 7], [3, 4, 6]]] {
            let result = try UnitSurgeon.remove(weight: w, hessian: h, units: units, count: 1, dampening: 0, step: 1)
            var errors: [Double] = []
            for (u, cols) in units.enumerated() {
                let exact = leastSquares(x: x, w: w, keep: (0..<n).filter { !cols.contains($0) }).error
                errors.append(exact)
                XCTAssertEqual(result.scores[u], exact, accuracy: 1e-3 * exact + 1e-6, "units \(units), unit \(u)")
            }
            let best = errors.indices.min { errors[$0] < errors[$1] }!
            XCTAssertEqual(result.removed, [best], "units \(units)")
            let keep = (0..<n).filter { !units[best].contains($0) }
            let optimum = leastSquares(x: x, w: w, keep: keep).weight
            let updated = try XCTUnwrap(result.weight)
            for r in 0..<rows {
                for (i, j) in keep.enumerated() {
                    XCTAssertEqual(Double(updated[r * n + j]), optimum[r][i], accuracy: 2e-3, "units \(units), [\(r), \(j)]")
                }
                for j in units[best] { XCTAssertEqual(updated[r * n + j], 0) }
            }
        }
    }

    /// Removing a fixed set of units in one block gives the least-squares best weight on what is left, and choosing
    /// without the update leaves the weight alone.
    func testFixedRemovalAndNoUpdate() throws {
        let rows = 4, n = 9
        let (x, h, w) = problem(rows: rows, n: n, tokens: 50, seed: 5)
        let units = (0..<n).map { [$0] }
        let result = try UnitSurgeon.remove(weight: w, hessian: h, units: units, count: 3, fixed: [1, 4, 8], dampening: 0)
        XCTAssertEqual(result.removed, [1, 4, 8])
        let keep = [0, 2, 3, 5, 6, 7]
        let optimum = leastSquares(x: x, w: w, keep: keep).weight
        let updated = try XCTUnwrap(result.weight)
        for r in 0..<rows { for (i, j) in keep.enumerated() { XCTAssertEqual(Double(updated[r * n + j]), optimum[r][i], accuracy: 2e-3) } }
        let chooseOnly = try UnitSurgeon.remove(weight: w, hessian: h, units: units, count: 3, dampening: 0, step: 1, update: false)
        XCTAssertNil(chooseOnly.weight)
        XCTAssertEqual(chooseOnly.removed.count, 3)
        // Greedy in steps of one: each pick is the brute-force best given the earlier picks.
        var kept = Array(0..<n)
        for pick in chooseOnly.removed {
            let errors = kept.map { c in leastSquares(x: x, w: w, keep: kept.filter { $0 != c }).error }
            XCTAssertEqual(pick, kept[errors.indices.min { errors[$0] < errors[$1] }!])
            kept.removeAll { $0 == pick }
        }
    }

    /// On a tiny LLaMA: the driver keeps the uniform plan's unit counts (the same parameter count as any criterion),
    /// and its update brings the pruned model's logits on the calibration windows closer to the dense model's than
    /// removing the same units without it.
    func testDriverKeepsTheBudgetAndTheUpdateHelps() throws {
        var rng = SplitMix64(seed: 9)
        let tokens = (0..<400).map { _ in Int32(rng.next() % 23) }
        let set = try CalibrationSet(tokens: tokens, windows: 8, length: 24, offset: 0)
        let dense = try tinyLlama(layers: 1, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, ffn: 24)
        let reference = try dense.forward(Graph(), tokens: set.tokens, batch: set.windows).value.array
        let graph = try DependencyGraphBuilder().build(model: dense)
        let pruner = StructuredPruner(ratio: 0.3, layers: 0...0)

        let byL2 = try tinyLlama(layers: 1, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, ffn: 24)
        try StructuredPruner.apply(
            try pruner.plan(model: byL2, graph: graph, estimator: CriterionEstimator(criterion: .l2, aggregation: .sum)),
            graph: graph, to: byL2)

        let model = try tinyLlama(layers: 1, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, ffn: 24)
        let removals = try StructuredOBS(pruner: pruner).run(model: model, graph: graph, calibration: set)
        XCTAssertEqual(model.parameterCount, byL2.parameterCount)
        XCTAssertEqual(model.config.intermediateSizes, byL2.config.intermediateSizes)
        XCTAssertEqual(model.config.kvHeads, byL2.config.kvHeads)

        let plain = try tinyLlama(layers: 1, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, ffn: 24)
        try StructuredPruner.apply(removals, graph: graph, to: plain)
        func error(_ m: DecoderModel) throws -> Double {
            let out = try m.forward(Graph(), tokens: set.tokens, batch: set.windows).value.array
            return zip(out, reference).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
        }
        let compensated = try error(model), removedOnly = try error(plain)
        XCTAssertLessThan(compensated, 0.8 * removedOnly, "OBS update \(compensated) vs plain removal \(removedOnly)")

        // The same removals given as `fixed` and compensated reproduce the OBS model.
        var fixedOBS = StructuredOBS(pruner: pruner)
        fixedOBS.fixed = removals
        let again = try tinyLlama(layers: 1, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, ffn: 24)
        XCTAssertEqual(try fixedOBS.run(model: again, graph: graph, calibration: set).map(\.removedUnits), removals.map(\.removedUnits))
        XCTAssertLessThanOrEqual(try error(again), removedOnly)
    }

    /// obs is a driver, not a static score: asking the estimator for it fails with a clear error.
    func testObsIsNotAStaticScore() throws {
        let model = try tinyLlama()
        let graph = try DependencyGraphBuilder().build(model: model)
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0) })
        XCTAssertThrowsError(
            try CriterionEstimator(criterion: .obs, aggregation: .sum).scores(
                for: graph.groups.first { $0.kind == "mlp" }!, parameters: params)
        ) {
            XCTAssertTrue(String(describing: $0.localizedDescription).contains("layer by layer"))
        }
    }
}
