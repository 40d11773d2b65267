import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels
import TopiaryPrune
import XCTest

final class SparsifyTests: XCTestCase {
    func calibration(_ model: LlamaModel, windows: Int = 4, length: Int = 8) throws -> CalibrationSet {
        var rng = SplitMix64(seed: 4)
        let tokens = (0..<(windows * length + 10)).map { _ in Int32(rng.next() % UInt64(model.config.vocabSize)) }
        return try CalibrationSet(tokens: tokens, windows: windows, length: length, offset: 10)
    }

    func linears(_ m: LlamaModel) -> [Parameter] { m.layers.flatMap { [$0.q, $0.k, $0.v, $0.o, $0.gate, $0.up, $0.down] } }

    func zeros(_ t: Tensor) -> Int { (0..<t.count).filter { t[$0] == 0 }.count }

    func testMagnitudeRemovesTheSmallestWeightsOfEachMatrix() throws {
        let model = try tinyLlama(), before = linears(model).map { $0.value.copy() }
        try Sparsifier(method: .magnitude, sparsity: 0.5).run(model: model, calibration: nil)
        for (w, old) in zip(linears(model), before) {
            XCTAssertEqual(zeros(w.value), w.value.count / 2, w.name)
            let kept = (0..<old.count).filter { w.value[$0] != 0 }.map { abs(old[$0]) }
            let dropped = (0..<old.count).filter { w.value[$0] == 0 }.map { abs(old[$0]) }
            XCTAssertLessThanOrEqual(dropped.max()!, kept.min()!, w.name)
        }
    }

    func testWandaPrunesEachRowAndNMPatternHolds() throws {
        let model = try tinyLlama()
        try Sparsifier(method: .wanda, sparsity: 0.25).run(model: model, calibration: try calibration(model))
        for w in linears(model) {
            let cols = w.shape[1]
            for r in 0..<w.shape[0] { XCTAssertEqual((0..<cols).filter { w.value[r * cols + $0] == 0 }.count, cols / 4, w.name) }
        }
        let nm = try tinyLlama()
        try Sparsifier(method: .sparsegpt, sparsity: 0, pattern: try NMPattern("2:4")).run(model: nm, calibration: try calibration(nm))
        for w in linears(nm) {
            let cols = w.shape[1]
            for r in 0..<w.shape[0] {
                for g in stride(from: 0, to: cols, by: 4) {
                    XCTAssertGreaterThanOrEqual((g..<(g + 4)).filter { w.value[r * cols + $0] == 0 }.count, 2, w.name)
                }
            }
        }
    }

    /// SparseGPT's weight updates make the pruned layer reproduce the calibration outputs better than
    /// dropping the same fraction by magnitude.
    func testSparseGPTReconstructsLayerOutputsBetterThanMagnitude() throws {
        let original = try tinyLlama(ffn: 24)
        let set = try calibration(original, windows: 8, length: 16)
        func outputError(_ pruned: LlamaModel) throws -> Double {
            let a = try original.forward(Graph(), tokens: set.tokens, batch: set.windows).value
            let b = try pruned.forward(Graph(), tokens: set.tokens, batch: set.windows).value
            return (0..<a.count).reduce(0.0) { $0 + Double((a[$1] - b[$1]) * (a[$1] - b[$1])) }
        }
        let sgpt = try tinyLlama(ffn: 24), mag = try tinyLlama(ffn: 24)
        try Sparsifier(method: .sparsegpt, sparsity: 0.5).run(model: sgpt, calibration: set)
        try Sparsifier(method: .magnitude, sparsity: 0.5).run(model: mag, calibration: nil)
        XCTAssertLessThan(try outputError(sgpt), try outputError(mag))
        let total = linears(sgpt).reduce(0) { $0 + $1.value.count }, z = linears(sgpt).reduce(0) { $0 + zeros($1.value) }
        XCTAssertEqual(Double(z) / Double(total), 0.5, accuracy: 0.02)
    }

    func testBadSettingsAreClearErrors() throws {
        let model = try tinyLlama()
        XCTAssertThrowsError(try Sparsifier(method: .magnitude, sparsity: 1.0).validate(model: model, calibration: nil)) {
            XCTAssertEqual($0 as? PruneError, .invalidRatio(1.0))
        }
        XCTAssertThrowsError(try NMPattern("4:4"))
        XCTAssertThrowsError(try NMPattern("2:x"))
        XCTAssertThrowsError(try Sparsifier(method: .magnitude, sparsity: 0, pattern: try NMPattern("2:5")).validate(model: model, calibration: nil)) {
            XCTAssertTrue($0.localizedDescription.contains("does not divide"), "\($0)")
        }
        XCTAssertThrowsError(try Sparsifier(method: .bias, sparsity: 0.5).validate(model: model, calibration: nil)) {
            XCTAssertTrue($0.localizedDescription.contains("not applicable"), "\($0)")
        }
        XCTAssertThrowsError(try Sparsifier(method: .wanda, sparsity: 0.5).validate(model: model, calibration: nil)) {
            XCTAssertTrue($0.localizedDescription.contains("needs calibration"), "\($0)")
        }
    }
}

final class AllocationTests: XCTestCase {
    func testHillAlphaSeparatesHeavyAndLightTails() throws {
        var rng = SplitMix64(seed: 5)
        // Random Gaussian-like weights: Marchenko–Pastur spectrum, light tail (large α).
        let random = Tensor(shape: [32, 64], values: (0..<2048).map { _ in rng.nextFloat(-1, 1) })
        // A few strong directions on top: a heavy tail (smaller α).
        let heavy = random.copy()
        for r in 0..<32 { for c in 0..<64 { heavy[r * 64 + c] += Float(4 * (r % 4 == 0 ? 1 : 0)) * sin(Float(c) * Float(r + 1) * 0.1) } }
        XCTAssertGreaterThan(try LayerAllocation.hillAlpha(random), try LayerAllocation.hillAlpha(heavy))
    }

    func testAlphaPruningKeepsTheMeanSparsity() throws {
        let model = try tinyLlama(layers: 3)
        let (ratios, alphas) = try LayerAllocation.alphaPruning(model: model, sparsity: 0.5, epsilon: 0.1)
        XCTAssertEqual(ratios.count, 3)
        XCTAssertEqual(alphas.count, 3)
        XCTAssertEqual(ratios.reduce(0, +) / 3, 0.5, accuracy: 0.02)
        // Larger α → more sparsity.
        let order = alphas.indices.sorted { alphas[$0] < alphas[$1] }
        XCTAssertLessThanOrEqual(ratios[order.first!], ratios[order.last!])
    }
}
