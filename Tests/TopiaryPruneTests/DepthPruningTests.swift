import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGraph
import TopiaryModels
import XCTest

@testable import TopiaryPrune

/// Depth pruning: whole blocks scored, removed and renumbered.
final class DepthPruningTests: XCTestCase {
    func logits(_ m: DecoderModel, _ tokens: [Int32]) throws -> [Float] {
        try m.forward(Graph(recording: false), tokens: tokens, batch: 2).value.array
    }

    /// A copy of `m` whose block `l` adds nothing to the residual stream: its output projections (o, down) are zero.
    /// Independent of the removal code, and the same function as a model without the block.
    func silenced(_ m: DecoderModel, _ l: Int) throws -> DecoderModel {
        var weights: [String: Tensor] = [:]
        for p in m.parameters { weights[p.name] = p.value.copy() }
        for name in [m.layers[l].o.name, m.layers[l].down.name] {
            weights[name] = Tensor(zeros: weights[name]!.shape)
        }
        return try DecoderModel(config: m.config, weights: weights)
    }

    let tokens: [Int32] = [1, 5, 9, 2, 7, 3, 11, 4, 6, 8, 0, 12, 5, 3, 2, 9]

    func testRemovingABlockEqualsSilencingIt() throws {
        for (name, make) in [("llama", { try tinyLlama(layers: 4) }), ("gemma3", { try tinyGemma(layers: 6) })]
            as [(String, () throws -> DecoderModel)]
        {
            for l in [0, 2] {
                let reference = try logits(silenced(try make(), l), tokens)
                let m = try make()
                let localBefore = (0..<m.config.layerCount).map(m.config.isSliding)
                try m.removeLayers([l])
                XCTAssertEqual(m.config.layerCount, (name == "llama" ? 4 : 6) - 1)
                // Every kept layer keeps its attention type (Gemma 3's local/global pattern is data, not index).
                XCTAssertEqual(
                    (0..<m.config.layerCount).map(m.config.isSliding), localBefore.enumerated().filter { $0.offset != l }.map(\.element))
                // Renumbered names, as a model of that depth names them.
                XCTAssertEqual(m.layers.last!.q.name, "model.layers.\(m.config.layerCount - 1).self_attn.q_proj.weight")
                let got = try logits(m, tokens)
                let worst = zip(got, reference).map { abs($0 - $1) }.max()!
                XCTAssertLessThan(worst, 1e-4, "\(name) layer \(l)")
            }
        }
    }

    func testRemovalIsRefusedWhereItCannotBeDone() throws {
        let m = try tinyLlama(layers: 3)
        XCTAssertThrowsError(try m.removeLayers([0, 1, 2])) { XCTAssertTrue("\($0)".contains("would leave none"), "\($0)") }
        XCTAssertThrowsError(try m.removeLayers([5])) { XCTAssertTrue("\($0)".contains("layer 5 does not exist"), "\($0)") }
        XCTAssertEqual(m.config.layerCount, 3)
        XCTAssertThrowsError(try DepthPruner.check(count: 3, layerCount: 3))
        XCTAssertNoThrow(try DepthPruner.check(count: 2, layerCount: 3))
    }

    func calibration() throws -> CalibrationSet {
        try CalibrationSet(tokens: (0..<64).map { Int32(($0 * 7 + 3) % 23) }, windows: 3, length: 16, offset: 4)
    }

    /// ShortGPT's block influence against its definition: 1 − cos(h_in, h_out) per token, averaged, computed here from the
    /// residual streams before and after each block; a silenced block scores 0.
    func testBlockInfluenceMatchesAHandComputation() throws {
        let m = try silenced(try tinyLlama(layers: 3), 1)
        let set = try calibration()
        let scores = try BlockInfluenceCriterion().scores(model: m, calibration: set, progress: nil)
        var expected = [Double](repeating: 0, count: 3)
        for w in 0..<set.windows {
            let g = Graph(recording: false)
            let steps = try DecoderModel.LayerSteps(model: m, batch: 1, length: set.length)
            var h = try m.embed(g, tokens: Array(set.tokens[(w * 16)..<((w + 1) * 16)]))
            for l in 0..<3 {
                let out = try m.layer(g, l, h, steps: steps)
                let a = h.value.array, b = out.value.array
                for t in 0..<16 {
                    let x = a[(t * 16)..<((t + 1) * 16)].map(Double.init), y = b[(t * 16)..<((t + 1) * 16)].map(Double.init)
                    let dot = zip(x, y).map { $0 * $1 }.reduce(0, +)
                    let norms = (x.map { $0 * $0 }.reduce(0, +) * y.map { $0 * $0 }.reduce(0, +)).squareRoot()
                    expected[l] += (1 - dot / norms) / Double(set.windows * 16)
                }
                h = out
            }
        }
        for l in 0..<3 { XCTAssertEqual(scores[l], expected[l], accuracy: 1e-9) }
        XCTAssertEqual(scores[1], 0, accuracy: 1e-6)
        XCTAssertGreaterThan(scores[0], 1e-3)
        XCTAssertEqual(DepthPruner.lowest(scores, count: 1), [1])
    }

    /// The perplexity criterion is the calibration perplexity of the model without the block: here measured by the
    /// perplexity evaluator on copies whose block is silenced.
    func testBlockPerplexityIsThePerplexityWithoutTheBlock() throws {
        let m = try tinyLlama(layers: 3)
        let set = try calibration()
        let scores = try BlockPerplexityCriterion().scores(model: m, calibration: set, progress: nil)
        for l in 0..<3 {
            let ppl = try PerplexityEvaluator(window: 16, maxWindows: 3).evaluate(try silenced(m, l), tokens: set.tokens).ppl
            XCTAssertEqual(scores[l], ppl, accuracy: 1e-4 * ppl)
        }
    }

    /// Taylor+: Σ|w·∂L/∂w| over each block's weights, against gradients of the mean loss taken here.
    func testBlockTaylorSumsWeightTimesGradientOverTheBlock() throws {
        let m = try tinyLlama(layers: 3)
        let set = try calibration()
        let scores = try BlockTaylorCriterion().scores(model: m, calibration: set, progress: nil)
        XCTAssertTrue(m.parameters.allSatisfy { $0.grad == nil && $0.requiresGrad }, "gradients are left behind")
        for w in 0..<set.windows {
            let ids = Array(set.tokens[(w * 16)..<((w + 1) * 16)])
            let g = Graph(recording: true)
            let loss = try g.crossEntropy(try m.forward(g, tokens: ids), targets: Array(ids.dropFirst()) + [-100])
            try g.backward(loss, seed: 1 / Float(set.windows))
        }
        for l in 0..<3 {
            let expected = m.layers[l].all.reduce(0.0) { s, p in
                s + zip(p.value.array, p.grad!.array).map { Double(abs($0 * $1)) }.reduce(0, +)
            }
            XCTAssertEqual(scores[l], expected, accuracy: 1e-4 * expected)
        }
    }

    /// Iterative selection rescoring after each removal; the record names the blocks by their original index.
    func testIterativeAndOneShotSelectionRecordOriginalIndices() throws {
        for selection in BlockSelection.allCases {
            let m = try silenced(try silenced(try tinyLlama(layers: 5), 1), 3)
            let removal = try DepthPruner.run(
                model: m, count: 2, criterion: .influence, selection: selection, calibration: try calibration())
            XCTAssertEqual(removal.removed, [1, 3], "\(selection)")
            XCTAssertEqual(removal.kept, [0, 2, 4])
            XCTAssertEqual(m.config.layerCount, 3)
            XCTAssertEqual(removal.scores.count, 5)
        }
        let m = try tinyLlama(layers: 4)
        let one = DepthPruner.parameters(of: [0], in: m)
        XCTAssertThrowsError(
            try DepthPruner.run(model: m, count: 2, criterion: .influence, calibration: try calibration(), budget: one + 1)
        ) { XCTAssertTrue("\($0)".contains("more than the --ratio budget"), "\($0)") }
        XCTAssertEqual(m.config.layerCount, 4, "refused before anything was removed")
    }

    func testTheLayerRangeAndTheScoresFollowTheKeptLayers() throws {
        XCTAssertEqual(DepthPruner.keptRange(3...27, kept: [0, 1, 2, 3, 5, 8, 28, 29]), 3...5)
        XCTAssertNil(DepthPruner.keptRange(4...4, kept: [0, 1, 2, 3, 5]))
        let m = try tinyLlama(layers: 4)
        let old = try DependencyGraphBuilder().build(model: m)
        var scores: [Int: [Double]] = [:]
        for g in old.groups where g.layer != nil { scores[g.id] = (0..<g.units).map { Double(g.layer! * 100 + $0) } }
        try m.removeLayers([1])
        let new = try DependencyGraphBuilder().build(model: m)
        let carried = DepthPruner.carry(scores, from: old, to: new, kept: [0, 2, 3])
        for g in new.groups where g.layer != nil {
            XCTAssertEqual(carried[g.id]?.first, Double([0, 2, 3][g.layer!] * 100), "\(g.kind) \(g.layer!)")
        }
    }
}
