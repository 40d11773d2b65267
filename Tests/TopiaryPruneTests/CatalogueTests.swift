import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import XCTest

/// The rest of the study's catalogue: gradient sensitivity, gradient-based Taylor, EWC, L1 rows, random pattern.
final class CatalogueTests: XCTestCase {
    func linears(_ m: DecoderModel) -> [Parameter] { m.layers.flatMap { [$0.q, $0.k, $0.v, $0.o, $0.gate, $0.up, $0.down] } }

    /// Each gradient method removes exactly the weights its metric ranks lowest, computed here from the same gradients.
    func testGradientMethodsRankByTheirMetric() throws {
        for method in [SparsifyMethod.gradient, .taylor, .ewc] {
            let model = try tinyLlama()
            let set = try randomCalibration(model, windows: 4, length: 8)
            // The reference metric, from gradients computed the way the method does.
            let reference = try tinyLlama()
            for p in reference.parameters { p.requiresGrad = p.name.contains("proj") }
            var fisher: [String: Tensor] = [:]
            if method == .ewc {
                fisher = try Calibration.fisher(reference, set)
            } else {
                try Calibration.accumulateGradients(reference, set, windowsPerBatch: 4)
            }
            try Sparsifier(method: method, sparsity: 0.5).run(model: model, calibration: set)
            for (w, r) in zip(linears(model), linears(reference)) {
                let metric: [Float] = (0..<r.value.count).map { i in
                    switch method {
                    case .gradient: return abs(r.grad![i])
                    case .taylor: return abs(r.value[i] * r.grad![i])
                    default: return fisher[r.name]![i]
                    }
                }
                if method == .ewc {  // ½·F·w² with F = Σₛ gₛ²: check one entry against its definition's shape
                    XCTAssertTrue(metric.allSatisfy { $0 >= 0 })
                }
                let zeroed = (0..<metric.count).filter { w.value[$0] == 0 }
                XCTAssertEqual(zeroed.count, metric.count / 2, "\(method) \(w.name)")
                let kept = Set(0..<metric.count).subtracting(zeroed)
                XCTAssertLessThanOrEqual(
                    zeroed.map { metric[$0] }.max()!, kept.map { metric[$0] }.min()! * 1.0001 + 1e-12, "\(method) \(w.name)")
            }
        }
    }

    /// A sweep computes the dense model's gradients (or Fisher) once and reuses them at every level: with those
    /// statistics given, each gradient-based method prunes exactly as when it computes them itself, at any level, and
    /// computing them leaves no gradients and the trainable flags as they were.
    func testPrecomputedDenseStatisticsGiveTheSameMasks() throws {
        for method in [SparsifyMethod.movement, .gradient, .taylor, .ewc, .fisherOBS] {
            let probe = try tinyLlama(hidden: 16, ffn: 24)
            let set = try randomCalibration(probe, windows: 4, length: 8)
            probe.parameters[0].requiresGrad = false
            var s = Sparsifier(method: method, sparsity: 0.5)
            s.blockSize = 8
            let statistics = try s.denseStatistics(model: probe, calibration: set)
            XCTAssertEqual(statistics.count, linears(probe).count, "\(method)")
            XCTAssertFalse(probe.parameters[0].requiresGrad, "\(method)")
            XCTAssertTrue(probe.parameters.dropFirst().allSatisfy(\.requiresGrad), "\(method)")
            XCTAssertTrue(probe.parameters.allSatisfy { $0.grad == nil }, "\(method)")
            for level in [0.3, 0.6] {
                s.sparsity = level
                let direct = try tinyLlama(hidden: 16, ffn: 24), reused = try tinyLlama(hidden: 16, ffn: 24)
                var t = s
                t.precomputed = nil
                try t.run(model: direct, calibration: set)
                t.precomputed = statistics
                try t.run(model: reused, calibration: set)
                for (a, b) in zip(linears(direct), linears(reused)) {
                    XCTAssertEqual(a.value.array, b.value.array, "\(method) at \(level): \(a.name)")
                }
                XCTAssertGreaterThan(linears(reused).reduce(0) { $0 + $1.value.zeroCount }, 0)
            }
        }
        // The comparison can fail: movement given the Fisher instead of its gradients prunes other weights.
        let set = try randomCalibration(try tinyLlama(hidden: 16, ffn: 24), windows: 4, length: 8)
        let direct = try tinyLlama(hidden: 16, ffn: 24), wrong = try tinyLlama(hidden: 16, ffn: 24)
        try Sparsifier(method: .movement, sparsity: 0.5).run(model: direct, calibration: set)
        var s = Sparsifier(method: .movement, sparsity: 0.5)
        s.precomputed = try Sparsifier(method: .ewc, sparsity: 0.5).denseStatistics(
            model: try tinyLlama(hidden: 16, ffn: 24), calibration: set)
        try s.run(model: wrong, calibration: set)
        XCTAssertNotEqual(linears(direct).flatMap(\.value.array), linears(wrong).flatMap(\.value.array))
    }

    /// fisher-obs with γ = 0 is SparseGPT, zero for zero; with γ > 0 the rows the loss cares more about keep more of
    /// their weights (the block-wide selection moves zeros between rows) at the same overall sparsity.
    func testFisherOBSIsSparseGPTWithRowWeights() throws {
        func run(_ method: SparsifyMethod, gamma: Double) throws -> DecoderModel {
            let model = try tinyLlama(hidden: 16, ffn: 24)
            var s = Sparsifier(method: method, sparsity: 0.5)
            s.rowSensitivityPower = gamma
            s.blockSize = 8
            try s.run(model: model, calibration: try randomCalibration(model, windows: 6, length: 12))
            return model
        }
        let sparseGPT = try run(.sparsegpt, gamma: 1), plain = try run(.fisherOBS, gamma: 0), weighted = try run(.fisherOBS, gamma: 2)
        for (a, b) in zip(linears(sparseGPT), linears(plain)) { XCTAssertEqual(a.value.array, b.value.array, a.name) }
        // The Fisher row mass, as the method computes it, on the dense model.
        let reference = try tinyLlama(hidden: 16, ffn: 24)
        for p in reference.parameters { p.requiresGrad = p.name.contains("proj") }
        let fisher = try Calibration.fisher(reference, try randomCalibration(reference, windows: 6, length: 12))
        var moved = 0, agree = 0
        for (w, s) in zip(linears(weighted), linears(sparseGPT)) {
            let rows = w.shape[0], cols = w.shape[1]
            // The same count as SparseGPT's (whose block-wide `≤ threshold` takes one extra weight per block, as the reference).
            XCTAssertEqual(
                (0..<w.value.count).filter { w.value[$0] == 0 }.count, (0..<s.value.count).filter { s.value[$0] == 0 }.count, w.name)
            let mass = fisher[w.name]!.sums(keepingAxis: 0)
            let extra = (0..<rows).map { r in
                (0..<cols).filter { w.value[r * cols + $0] == 0 }.count - (0..<cols).filter { s.value[r * cols + $0] == 0 }.count
            }
            // Rows that lose more zeros than under SparseGPT should be the rows with more Fisher mass.
            for r in 0..<rows where extra[r] != 0 {
                moved += 1
                let above = mass[r] > mass.sorted()[rows / 2]
                if (extra[r] < 0) == above { agree += 1 }
            }
        }
        XCTAssertGreaterThan(moved, 10)
        XCTAssertGreaterThan(Double(agree) / Double(moved), 0.6, "\(agree) of \(moved) rows moved the way their Fisher mass says")
    }

    func testL1RowsRemovesWholeRowsAndRandomPatternSharesColumnsPerBlock() throws {
        let model = try tinyLlama(ffn: 80)
        let before = model.layers[0].gate.value.copy()
        try Sparsifier(method: .l1Rows, sparsity: 0.5).run(model: model, calibration: nil)
        let w = model.layers[0].gate, cols = w.shape[1]
        let rows = (0..<w.shape[0]).map { r in (0..<cols).map { w.value[r * cols + $0] } }
        let zeroRows = rows.indices.filter { rows[$0].allSatisfy { $0 == 0 } }
        XCTAssertEqual(zeroRows.count, w.shape[0] / 2)
        let l1 = (0..<w.shape[0]).map { r in (0..<cols).reduce(Float(0)) { $0 + abs(before[r * cols + $1]) } }
        let kept = Set(rows.indices).subtracting(zeroRows)
        XCTAssertLessThanOrEqual(zeroRows.map { l1[$0] }.max()!, kept.map { l1[$0] }.min()!)

        let patterned = try tinyLlama(ffn: 80)
        try Sparsifier(method: .randomPattern, sparsity: 0.25).run(model: patterned, calibration: nil)
        let g = patterned.layers[0].gate  // 80 rows: blocks 0–63 and 64–79
        func zeroColumns(_ r: Int) -> [Int] { (0..<cols).filter { g.value[r * cols + $0] == 0 } }
        XCTAssertEqual(zeroColumns(0), zeroColumns(63), "rows of one block share the pattern")
        XCTAssertEqual(zeroColumns(64), zeroColumns(79))
        XCTAssertEqual(zeroColumns(0).count, cols / 4)
        XCTAssertNotEqual(zeroColumns(0), zeroColumns(64), "blocks draw their own patterns")
    }
}

/// Topiary's activation-aware Taylor indicator.
final class TaylorActivationTests: XCTestCase {
    func testScoresAreNormalisedTaylorPlusLambdaTimesEnergy() throws {
        let model = try tinyLlama()
        let graph = try DependencyGraphBuilder().build(model: model)
        let set = try randomCalibration(model, windows: 4, length: 8)
        try Calibration.accumulateGradients(model, set)
        let names = Set(graph.groups.flatMap { $0.members.map(\.tensor) })
        let energies = try Calibration.inputEnergies(model, set, weights: names)
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0) })
        let mlp = graph.groups.first { $0.kind == "mlp" }!
        let down = model.layers[mlp.layer!].down
        XCTAssertEqual(energies[down.name]?.count, down.shape[1])

        let taylor = try CriterionEstimator(criterion: .taylor, aggregation: .sum).scores(for: mlp, parameters: params)
        var estimator = CriterionEstimator(criterion: .taylorActivation, aggregation: .sum)
        estimator.activations = energies
        estimator.taylorOrder = 1
        estimator.lambda = 0
        let plain = try estimator.scores(for: mlp, parameters: params)
        let meanTaylor = taylor.reduce(0, +) / Double(taylor.count)
        for (a, b) in zip(plain, taylor) { XCTAssertEqual(a, b / meanTaylor, accuracy: 1e-9) }

        estimator.lambda = 2
        let combined = try estimator.scores(for: mlp, parameters: params)
        // Energy of channel c: ‖down[:, c]‖² · Σ x_c², by hand.
        let rows = down.shape[0], cols = down.shape[1]
        let energy = (0..<cols).map { c in
            (0..<rows).reduce(0.0) { $0 + Double(down.value[$1 * cols + c] * down.value[$1 * cols + c]) } * Double(energies[down.name]![c])
        }
        let meanEnergy = energy.reduce(0, +) / Double(energy.count)
        for c in 0..<cols {
            XCTAssertEqual(combined[c], taylor[c] / meanTaylor * pow(energy[c] / meanEnergy, 2), accuracy: 1e-6 * max(1, combined[c]))
        }
        XCTAssertNotEqual(
            combined.indices.sorted { combined[$0] < combined[$1] }, taylor.indices.sorted { taylor[$0] < taylor[$1] },
            "the activation term changes the ranking on this model")

        // Second-order variant: with λ = 0 it is taylor2 normalised (the same ranking).
        let fisher = try Calibration.fisher(model, set)
        var second = CriterionEstimator(criterion: .taylorActivation, aggregation: .sum, fisher: fisher)
        second.activations = energies
        second.lambda = 0
        let t2 = try CriterionEstimator(criterion: .taylor2, aggregation: .sum, fisher: fisher).scores(for: mlp, parameters: params)
        let s2 = try second.scores(for: mlp, parameters: params)
        let mean2 = t2.reduce(0, +) / Double(t2.count)
        for (a, b) in zip(s2, t2) { XCTAssertEqual(a, b / mean2, accuracy: 1e-9) }
    }
}
