import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels
import TopiaryPrune
import XCTest

/// Random token windows (after 10 skipped tokens) for calibrating a tiny model.
func randomCalibration(_ model: DecoderModel, windows: Int, length: Int) throws -> CalibrationSet {
    var rng = SplitMix64(seed: 4)
    let tokens = (0..<(windows * length + 10)).map { _ in Int32(rng.next() % UInt64(model.config.vocabSize)) }
    return try CalibrationSet(tokens: tokens, windows: windows, length: length, offset: 10)
}

final class SparsifyTests: XCTestCase {
    func calibration(_ model: DecoderModel, windows: Int = 4, length: Int = 8) throws -> CalibrationSet {
        try randomCalibration(model, windows: windows, length: length)
    }

    func linears(_ m: DecoderModel) -> [Parameter] { m.layers.flatMap { [$0.q, $0.k, $0.v, $0.o, $0.gate, $0.up, $0.down] } }

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
        func outputError(_ pruned: DecoderModel) throws -> Double {
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

    /// True-sequential mode: exact per-row sparsity; the first linears of layer 0 read the same input in both modes,
    /// so their masks agree; later linears see the outputs of already-pruned ones.
    func testTrueSequentialPrunesEachLinearFromItsActualInput() throws {
        let reference = try tinyLlama(layers: 3, ffn: 24), inLayer = try tinyLlama(layers: 3, ffn: 24)
        let set = try calibration(reference, windows: 6, length: 16)
        try Sparsifier(method: .wanda, sparsity: 0.5).run(model: reference, calibration: set)
        var s = Sparsifier(method: .wanda, sparsity: 0.5)
        s.trueSequential = true
        try s.run(model: inLayer, calibration: set)
        for w in linears(inLayer) {
            let cols = w.shape[1]
            for r in 0..<w.shape[0] { XCTAssertEqual((0..<cols).filter { w.value[r * cols + $0] == 0 }.count, cols / 2, w.name) }
        }
        for (a, b) in zip(
            [reference.layers[0].q, reference.layers[0].k, reference.layers[0].v],
            [inLayer.layers[0].q, inLayer.layers[0].k, inLayer.layers[0].v])
        {
            XCTAssertEqual((0..<a.value.count).map { a.value[$0] == 0 }, (0..<b.value.count).map { b.value[$0] == 0 }, a.name)
        }
        let differs = zip(linears(reference), linears(inLayer)).contains { a, b in
            (0..<a.value.count).contains { (a.value[$0] == 0) != (b.value[$0] == 0) }
        }
        XCTAssertTrue(differs, "the later linears should see the pruned outputs of the earlier ones")
        // SparseGPT in the same mode still beats magnitude on the calibration outputs.
        let original = try tinyLlama(ffn: 24), sgpt = try tinyLlama(ffn: 24), mag = try tinyLlama(ffn: 24)
        let cal = try calibration(original, windows: 8, length: 16)
        var t = Sparsifier(method: .sparsegpt, sparsity: 0.5)
        t.trueSequential = true
        try t.run(model: sgpt, calibration: cal)
        try Sparsifier(method: .magnitude, sparsity: 0.5).run(model: mag, calibration: nil)
        func outputError(_ pruned: DecoderModel) throws -> Double {
            let a = try original.forward(Graph(), tokens: cal.tokens, batch: cal.windows).value
            let b = try pruned.forward(Graph(), tokens: cal.tokens, batch: cal.windows).value
            return (0..<a.count).reduce(0.0) { $0 + Double((a[$1] - b[$1]) * (a[$1] - b[$1])) }
        }
        XCTAssertLessThan(try outputError(sgpt), try outputError(mag))
    }

    /// Chunks and linears run on parallel threads: the result must not depend on it (same weights, bit for bit, as
    /// with one thread), for both drivers and both calibrated methods.
    func testParallelDriversMatchOneThread() throws {
        let saved = BLAS.threads
        defer { BLAS.threads = saved }
        for method in [SparsifyMethod.wanda, .sparsegpt] {
            for trueSequential in [false, true] {
                var results: [[Float]] = []
                for threads in [1, 2] {
                    BLAS.threads = threads
                    let model = try tinyLlama(layers: 3, ffn: 24)
                    var s = Sparsifier(method: method, sparsity: 0.5)
                    s.trueSequential = trueSequential
                    s.windowsPerPass = 2
                    try s.run(model: model, calibration: try calibration(model, windows: 7, length: 16))
                    results.append(linears(model).flatMap { $0.value.array })
                }
                XCTAssertEqual(results[0], results[1], "\(method) trueSequential \(trueSequential)")
            }
        }
    }

    func testBadSettingsAreClearErrors() throws {
        let model = try tinyLlama()
        XCTAssertThrowsError(try Sparsifier(method: .magnitude, sparsity: 1.0).validate(model: model, calibration: nil)) {
            XCTAssertEqual($0 as? PruneError, .invalidRatio(1.0))
        }
        XCTAssertThrowsError(try NMPattern("4:4"))
        XCTAssertThrowsError(try NMPattern("2:x"))
        XCTAssertThrowsError(
            try Sparsifier(method: .magnitude, sparsity: 0, pattern: try NMPattern("2:5")).validate(model: model, calibration: nil)
        ) {
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
    func calibration(_ model: DecoderModel, windows: Int, length: Int) throws -> CalibrationSet {
        try randomCalibration(model, windows: windows, length: length)
    }

    func testHillAlphaSeparatesHeavyAndLightTails() throws {
        var rng = SplitMix64(seed: 5)
        // Random weights: Marchenko–Pastur spectrum, light tail (large α).
        let random = Tensor(shape: [128, 256], values: (0..<32768).map { _ in rng.nextFloat(-1, 1) })
        // Rows scaled by 1/(r+1): eigenvalues fall off as a power of their rank, a heavy tail (small α).
        let heavy = random.copy()
        for r in 0..<128 { for c in 0..<256 { heavy[r * 256 + c] /= Float(r + 1) } }
        // (The `peak` start is checked on sampled power laws below: a Marchenko–Pastur bulk has no power-law tail to fit.)
        XCTAssertGreaterThan(try LayerAllocation.hillAlpha(random, tail: .median), try LayerAllocation.hillAlpha(heavy, tail: .median) + 1)
    }

    /// The Hill estimator recovers the exponent of a sampled power law, with either tail start.
    func testHillAlphaRecoversAPowerLawExponent() {
        var rng = SplitMix64(seed: 9)
        for alpha in [2.0, 3.5] {
            // λ = U^(−1/(α−1)) has density ∝ λ^(−α) on [1, ∞).
            let eigs = (0..<4000).map { _ in pow(Double(max(rng.nextFloat(), 1e-7)), -1 / (alpha - 1)) }.sorted()
            XCTAssertEqual(LayerAllocation.hillAlpha(spectrum: eigs, tail: .peak), alpha, accuracy: 0.25 * alpha)
            XCTAssertEqual(LayerAllocation.hillAlpha(spectrum: eigs, tail: .median), alpha, accuracy: 0.25 * alpha)
        }
    }

    func testAlphaPruningMapping() {
        // [S(1−ε), S(1+ε)] linearly in the score, largest score most sparse; equal sizes keep the mean exactly.
        let r = LayerAllocation.alphaPruningRatios(scores: [1, 2, 3], sizes: [1, 1, 1], sparsity: 0.5, epsilon: 0.2)
        for (x, y) in zip(r, [0.4, 0.5, 0.6]) { XCTAssertEqual(x, y, accuracy: 1e-12) }
        // Unequal sizes: rescaled so that the parameter-weighted mean stays S.
        let sizes = [1.0, 3.0, 2.0]
        let w = LayerAllocation.alphaPruningRatios(scores: [5, 1, 2], sizes: sizes, sparsity: 0.7, epsilon: 0.2)
        XCTAssertEqual(zip(w, sizes).reduce(0) { $0 + $1.0 * $1.1 } / 6, 0.7, accuracy: 1e-12)
        XCTAssertGreaterThan(w[0], w[2])
        XCTAssertGreaterThan(w[2], w[1])
        XCTAssertEqual(w[0] / w[1], 1.2 / 0.8, accuracy: 1e-9)
    }

    func testAlphaPruningKeepsTheMeanSparsity() throws {
        let model = try tinyLlama(layers: 3)
        let (ratios, alphas) = try LayerAllocation.alphaPruning(model: model, sparsity: 0.5, epsilon: 0.1)
        XCTAssertEqual(ratios.count, 3)
        XCTAssertEqual(alphas.count, 3)
        XCTAssertEqual(ratios.reduce(0, +) / 3, 0.5, accuracy: 1e-9)
        // Larger α → more sparsity.
        let order = alphas.indices.sorted { alphas[$0] < alphas[$1] }
        XCTAssertLessThan(ratios[order.first!], ratios[order.last!])
        XCTAssertEqual(ratios[order.last!] / ratios[order.first!], 1.1 / 0.9, accuracy: 1e-9)
    }

    func testOWLMapping() {
        // More outliers → less sparsity; span 2λ; parameter-weighted mean S.
        let sizes = [2.0, 1.0, 1.0]
        let r = LayerAllocation.owlRatios(outlierRatios: [0.01, 0.03, 0.02], sizes: sizes, sparsity: 0.7, lambda: 0.08)
        XCTAssertEqual(zip(r, sizes).reduce(0) { $0 + $1.0 * $1.1 } / 4, 0.7, accuracy: 1e-12)
        XCTAssertEqual(r[0] - r[1], 0.16, accuracy: 1e-12)
        XCTAssertGreaterThan(r[0], r[2])
        XCTAssertGreaterThan(r[2], r[1])
        XCTAssertEqual(LayerAllocation.owlRatios(outlierRatios: [0.02, 0.02], sizes: [1, 1], sparsity: 0.6, lambda: 0.08), [0.6, 0.6])
    }

    /// OWL on a tiny model: outlier ratios are the fraction of |W|·‖X‖ above M × the layer mean (checked against
    /// activations recorded independently), the mean sparsity is kept, and the layer given planted outliers is
    /// pruned least.
    func testOWLScoresOutliersFromCalibrationActivations() throws {
        let model = try tinyLlama(layers: 4, ffn: 24)
        // Plant outliers: a few large weights on the inputs of layer 2's gate projection.
        let gate = model.layers[2].gate
        for r in 0..<6 { gate.value[r * gate.shape[1] + 3] *= 40 }
        let set = try calibration(model, windows: 4, length: 16)
        let (ratios, outliers) = try LayerAllocation.owl(
            model: model, calibration: set, sparsity: 0.6, m: 5, lambda: 0.08, windowsPerPass: 3)
        XCTAssertEqual(ratios.reduce(0, +) / 4, 0.6, accuracy: 1e-9)
        XCTAssertEqual(outliers.indices.max { outliers[$0] < outliers[$1] }, 2)
        XCTAssertEqual(ratios.indices.min { ratios[$0] < ratios[$1] }, 2)
        for i in outliers.indices { for j in outliers.indices where outliers[i] > outliers[j] { XCTAssertLessThan(ratios[i], ratios[j]) } }
        // Independent check of the outlier ratios: record every linear's input through a plain dense forward.
        var sumsq: [String: [Double]] = [:]
        let g = Graph()
        g.linearInputObserver = { w, x in
            let cols = x.shape.last!, rows = x.count / cols
            var s = sumsq[w.name] ?? [Double](repeating: 0, count: cols)
            for r in 0..<rows { for j in 0..<cols { s[j] += Double(x[r * cols + j]) * Double(x[r * cols + j]) } }
            sumsq[w.name] = s
        }
        _ = try model.forward(g, tokens: set.tokens, batch: set.windows)
        for (l, layer) in model.layers.enumerated() {
            var scores: [Double] = []
            for w in [layer.q, layer.k, layer.v, layer.o, layer.gate, layer.up, layer.down] {
                let cols = w.shape[1], s = sumsq[w.name]!
                for r in 0..<w.shape[0] { for j in 0..<cols { scores.append(Double(abs(w.value[r * cols + j])) * s[j].squareRoot()) } }
            }
            let mean = scores.reduce(0, +) / Double(scores.count)
            XCTAssertEqual(
                outliers[l], Double(scores.filter { $0 > 5 * mean }.count) / Double(scores.count), accuracy: 1.5 / Double(scores.count),
                "layer \(l)")
        }
    }
}
