import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import XCTest

final class VariationalDropoutTests: XCTestCase {
    /// Units whose output the model never reads (zeroed down_proj columns) get no gradient from the loss: without the
    /// KL term their α stays where it started, with it they rise together, while the loss moves the others. (Which live
    /// unit matters is a property of a trained model: the real-model run is in BENCHMARKS.md; the gate's gradient is
    /// checked by finite differences in BackwardRuleTests.) The model's weights are left untouched.
    func testAlphaFollowsWhatTheModelReads() throws {
        let dead = [2, 7]
        func model() throws -> DecoderModel {
            let m = try tinyLlama(layers: 2, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, ffn: 12)
            for layer in m.layers {
                let f = layer.down.shape[1]
                for r in 0..<layer.down.shape[0] {
                    for c in dead { layer.down.value[r * f + c] = 0 }
                }
            }
            return m
        }
        func learn(_ m: DecoderModel, klWeight: Double) throws -> (VariationalDropout.Result, [PruningGroup]) {
            let graph = try DependencyGraphBuilder().build(model: m)
            let groups = StructuredPruner.rankedGroups(graph, layers: 0...1)
            var vd = VariationalDropout()
            vd.steps = 200
            vd.learningRate = 0.1
            vd.initialLogAlpha = -3
            vd.klWeight = klWeight
            return (try vd.run(model: m, groups: groups, calibration: try randomCalibration(m, windows: 6, length: 16)), groups)
        }
        let m = try model()
        let before = m.parameters.map { $0.value.array }
        let (noKL, groups) = try learn(m, klWeight: 0)
        XCTAssertEqual(m.parameters.map { $0.value.array }, before, "the model's weights are frozen")
        XCTAssertTrue(m.parameters.allSatisfy { $0.requiresGrad }, "trainable flags are restored")
        let (withKL, _) = try learn(try model(), klWeight: 1)
        XCTAssertEqual(withKL.history.count, 200)
        for g in groups where g.kind == "mlp" {
            let a0 = try XCTUnwrap(noKL.logAlpha[g.id]), a = try XCTUnwrap(withKL.logAlpha[g.id])
            for d in dead { XCTAssertEqual(a0[d], -3, "no loss gradient, no KL: α stays") }
            XCTAssertGreaterThan((0..<12).filter { abs(a0[$0] + 3) > 1e-3 }.count, 6, "the loss moves the live units")
            XCTAssertEqual(a[dead[0]], a[dead[1]], accuracy: 1e-6)
            XCTAssertGreaterThan(a[dead[0]], -3 + 1, "the KL term raises α")
            XCTAssertEqual(withKL.scores[g.id]!, a.map { -$0 })
        }
        for g in groups where g.kind == "attention" { XCTAssertEqual(withKL.logAlpha[g.id]?.count, g.units) }
    }

    func testBadSettingsAreClearErrors() throws {
        let model = try tinyLlama()
        let graph = try DependencyGraphBuilder().build(model: model)
        var vd = VariationalDropout()
        vd.steps = 0
        XCTAssertThrowsError(
            try vd.run(model: model, groups: graph.groups, calibration: try randomCalibration(model, windows: 2, length: 8)))
    }
}
