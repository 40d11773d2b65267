import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels
@testable import TopiaryPrune
import XCTest

final class LayerRatioSearchTests: XCTestCase {
    /// A fitness whose optimum is known (layer 0 should take little of the budget, layer 3 much): the search must
    /// improve on the uniform start, keep the budget (shares average 1) and respect the bounds.
    func testSearchImprovesOnUniformAndKeepsTheBudget() throws {
        let target = [0.2, 0.8, 1.2, 1.8]
        var search = LayerRatioSearch(layers: [0, 1, 2, 3], evaluations: 60, population: 8, seed: 3)
        search.maximumShare = 2.0
        let result = try search.run { shares in
            (0..<4).reduce(0.0) { $0 + pow(shares[$1]! - target[$1], 2) }
        }
        XCTAssertEqual(result.history.count, 60)
        XCTAssertEqual(result.history[0].shares, [1, 1, 1, 1], "the uniform candidate is evaluated first")
        XCTAssertEqual(result.uniformFitness, 1.0 * 0.64 + 0.04 + 0.04 + 0.64, accuracy: 1e-9)
        // Better than every starting candidate (the best, the steepest ramp, scores 0.18): mutations and crossovers matter.
        XCTAssertLessThan(result.fitness, 0.12)
        for c in result.history {
            XCTAssertEqual(c.shares.reduce(0, +) / 4, 1, accuracy: 1e-6)
            XCTAssertTrue(c.shares.allSatisfy { $0 >= 0 && $0 <= 2.0 + 1e-9 })
        }
        XCTAssertLessThan(result.shares[0]!, result.shares[3]!)
    }

    /// Shares move the budget between layers without changing the total removed.
    func testLayerSharesMoveTheBudgetBetweenLayers() throws {
        let model = try tinyLlama(layers: 3, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, ffn: 48)
        let graph = try DependencyGraphBuilder().build(model: model)
        let estimator = CriterionEstimator(criterion: .l2, aggregation: .sum)
        var pruner = StructuredPruner(ratio: 0.3, layers: 0...2)
        let uniform = try pruner.plan(model: model, graph: graph, estimator: estimator)
        pruner.layerShares = [0: 0.5, 1: 1.0, 2: 1.5]
        let skewed = try pruner.plan(model: model, graph: graph, estimator: estimator)
        func removedMLP(_ r: [GroupRemoval], _ l: Int) -> Int {
            r.filter { $0.kind == "mlp" && $0.layer == l }.map(\.removedUnits.count).reduce(0, +)
        }
        XCTAssertLessThan(removedMLP(skewed, 0), removedMLP(uniform, 0))
        XCTAssertGreaterThan(removedMLP(skewed, 2), removedMLP(uniform, 2))
        let shapes = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0.shape) })
        func removedParameters(_ r: [GroupRemoval]) -> Int {
            r.reduce(0) { total, removal in
                total + removal.removedUnits.count * graph.groups.first { $0.id == removal.group }!.parametersPerUnit(shapes: shapes)
            }
        }
        // The same budget, up to the rounding of whole KV groups (one attention unit per layer at most).
        let attentionUnit = graph.groups.first { $0.kind == "attention" }!.parametersPerUnit(shapes: shapes)
        XCTAssertLessThanOrEqual(abs(removedParameters(skewed) - removedParameters(uniform)), 3 * attentionUnit / 2)
        pruner.layerShares = [0: 2, 1: 2, 2: 2]
        XCTAssertThrowsError(try pruner.plan(model: model, graph: graph, estimator: estimator), "shares must average 1")
    }
}
