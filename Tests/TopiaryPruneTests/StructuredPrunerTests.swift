import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import XCTest

final class StructuredPrunerTests: XCTestCase {
    func testUniformPlanRemovesWholeKVGroupsAndChannelsAndKeepsTheModelRunning() throws {
        let model = try tinyLlama(layers: 3, heads: 4, kvHeads: 2, ffn: 20)
        let graph = try DependencyGraphBuilder().build(model: model)
        let before = model.parameterCount
        let pruner = StructuredPruner(ratio: 0.3, layers: 1...2)
        let removals = try pruner.plan(model: model, graph: graph, estimator: CriterionEstimator(criterion: .l1, aggregation: .sum))
        XCTAssertFalse(removals.isEmpty)
        try StructuredPruner.apply(removals, graph: graph, to: model)
        XCTAssertEqual(model.config.heads[0], 4)
        XCTAssertEqual(model.config.intermediateSizes[0], 20)
        XCTAssertLessThan(model.config.intermediateSizes[1], 20)
        XCTAssertLessThan(model.parameterCount, before)
        let logits = try model.forward(Graph(), tokens: [1, 2, 3], batch: 1)
        XCTAssertEqual(logits.shape, [3, model.config.vocabSize])
        // The lowest-scored units were removed.
        for r in removals {
            let kept = Set(0..<r.unitsBefore).subtracting(r.removedUnits)
            XCTAssertLessThanOrEqual(r.removedUnits.map { r.scores[$0] }.max()!, kept.map { r.scores[$0] }.min()!)
        }
    }

    func testBadRatiosAndRangesAreClearErrors() throws {
        let model = try tinyLlama()
        let graph = try DependencyGraphBuilder().build(model: model)
        let estimator = CriterionEstimator(criterion: .l2, aggregation: .sum)
        for ratio in [-0.1, 1.0, 1.5] {
            XCTAssertThrowsError(try StructuredPruner(ratio: ratio, layers: 0...1).plan(model: model, graph: graph, estimator: estimator)) {
                XCTAssertEqual($0 as? PruneError, .invalidRatio(ratio))
            }
        }
        XCTAssertThrowsError(try StructuredPruner.parseLayers("3-27", layerCount: 2)) {
            XCTAssertTrue($0.localizedDescription.contains("3-27"))
        }
        XCTAssertThrowsError(try StructuredPruner.parseLayers("5-1", layerCount: 30))
        XCTAssertEqual(try StructuredPruner.parseLayers("3-27", layerCount: 30), 3...27)
        // 0.95 of the non-embedding parameters from one layer would empty its groups.
        XCTAssertThrowsError(try StructuredPruner(ratio: 0.95, layers: 0...0).plan(model: model, graph: graph, estimator: estimator)) {
            guard case .wouldEmptyGroup = $0 as? PruneError else { return XCTFail("\($0)") }
        }
    }

    func testAggregations() {
        XCTAssertEqual(Aggregation.sum.combine([1, 2, 3]), 6)
        XCTAssertEqual(Aggregation.mean.combine([1, 2, 3]), 2)
        XCTAssertEqual(Aggregation.max.combine([1, 5, 3]), 5)
        XCTAssertEqual(Aggregation.prod.combine([2, 3]), 6)
        XCTAssertEqual(Aggregation.last.combine([2, 3, 7]), 7)
    }

    func testTaylorScoresMatchTheirDefinition() throws {
        let model = try tinyLlama()
        let graph = try DependencyGraphBuilder().build(model: model)
        let g = Graph(recording: true)
        let tokens: [Int32] = [1, 4, 2, 8, 5]
        try g.backward(g.crossEntropy(model.forward(g, tokens: tokens), targets: [4, 2, 8, 5, -100]))
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0) })
        let mlp = graph.groups.first { $0.kind == "mlp" }!
        let scores = try CriterionEstimator(criterion: .taylor, aggregation: .sum).scores(for: mlp, parameters: params)
        // Channel 3: Σ|w·g| over gate row 3, up row 3, down column 3.
        func rowSum(_ p: Parameter, _ r: Int) -> Double {
            let cols = p.shape[1]
            return (0..<cols).reduce(0) { $0 + Double(abs(p.value[r * cols + $1] * p.grad![r * cols + $1])) }
        }
        func colSum(_ p: Parameter, _ c: Int) -> Double {
            let cols = p.shape[1]
            return (0..<p.shape[0]).reduce(0) { $0 + Double(abs(p.value[$1 * cols + c] * p.grad![$1 * cols + c])) }
        }
        let expected =
            rowSum(params["model.layers.0.mlp.gate_proj.weight"]!, 3) + rowSum(params["model.layers.0.mlp.up_proj.weight"]!, 3)
            + colSum(params["model.layers.0.mlp.down_proj.weight"]!, 3)
        XCTAssertEqual(scores[3], expected, accuracy: 1e-6 * max(1, expected))
    }
}

final class HDF5ExportTests: XCTestCase {
    func testTensorsRoundTripThroughHDF5() throws {
        let model = try tinyLlama()
        let path = NSTemporaryDirectory() + "topiary-h5-\(getpid()).h5"
        defer { unlink(path) }
        try HDF5Export.write(model: model, configJSON: "{}", to: path)
        for p in model.parameters {
            let t = try HDF5Export.read(path: path, tensor: p.name)
            XCTAssertEqual(t.shape, p.shape)
            XCTAssertEqual(t.array, p.value.array)
        }
        XCTAssertThrowsError(try HDF5Export.read(path: path, tensor: "nope"))
    }
}
