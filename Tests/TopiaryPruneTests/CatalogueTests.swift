import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels
import TopiaryPrune
import XCTest

/// The rest of the study's catalogue: gradient sensitivity, gradient-based Taylor, EWC, L1 rows, random pattern.
final class CatalogueTests: XCTestCase {
    func linears(_ m: LlamaModel) -> [Parameter] { m.layers.flatMap { [$0.q, $0.k, $0.v, $0.o, $0.gate, $0.up, $0.down] } }

    /// Each gradient method removes exactly the weights its metric ranks lowest, computed here from the same gradients.
    func testGradientMethodsRankByTheirMetric() throws {
        for method in [SparsifyMethod.gradient, .taylor, .ewc] {
            let model = try tinyLlama()
            let set = try randomCalibration(model, windows: 4, length: 8)
            // The reference metric, from gradients computed the way the method does.
            let reference = try tinyLlama()
            for p in reference.parameters { p.requiresGrad = p.name.contains("proj") }
            var fisher: [String: Tensor] = [:]
            if method == .ewc { fisher = try Calibration.fisher(reference, set) } else {
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
                XCTAssertLessThanOrEqual(zeroed.map { metric[$0] }.max()!, kept.map { metric[$0] }.min()! * 1.0001 + 1e-12, "\(method) \(w.name)")
            }
        }
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
