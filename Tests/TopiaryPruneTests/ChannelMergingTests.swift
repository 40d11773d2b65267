import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import XCTest

final class ChannelMergingTests: XCTestCase {
    /// Three well-separated blobs are found whatever the start.
    func testKMeansFindsSeparatedClusters() {
        var rng = SplitMix64(seed: 1)
        let centres: [[Float]] = [[10, 0, 0], [0, 10, 0], [0, 0, 10]]
        let points = Tensor(shape: [30, 3], values: (0..<30).flatMap { i in centres[i % 3].map { $0 + rng.nextFloat(-0.5, 0.5) } })
        for seed in 0..<5 as Range<UInt64> {
            let a = ChannelMerging.kmeans(points, clusters: 3, seed: seed)
            for i in 0..<30 { XCTAssertEqual(a[i], a[i % 3], "seed \(seed), point \(i)") }
            XCTAssertEqual(Set(a).count, 3)
        }
    }

    /// Duplicated channels merge exactly: a layer whose MLP holds each channel twice (same gate and up rows) computes
    /// the same function after merging the copies into one channel with the summed down column.
    func testMergingDuplicatedChannelsKeepsTheFunction() throws {
        func duplicated() throws -> DecoderModel {
            let model = try tinyLlama(layers: 1, hidden: 16, heads: 4, kvHeads: 2, headDim: 4, ffn: 12)
            let layer = model.layers[0], d = 16
            // Channels 6..11 copy channels 0..5.
            for c in 6..<12 {
                (layer.gate.value.pointer + c * d).update(from: layer.gate.value.pointer + (c - 6) * d, count: d)
                (layer.up.value.pointer + c * d).update(from: layer.up.value.pointer + (c - 6) * d, count: d)
            }
            return model
        }
        let model = try duplicated()
        let tokens: [Int32] = [1, 5, 9, 2, 7, 3]
        let before = try model.forward(Graph(), tokens: tokens).value.array
        let graph = try DependencyGraphBuilder().build(model: model)
        let mlp = graph.groups.first { $0.kind == "mlp" }!
        let plan = [GroupRemoval(group: mlp.id, kind: "mlp", layer: 0, unitsBefore: 12, removedUnits: Array(0..<6), scores: [])]
        let merged = try ChannelMerging.mergeMLP(plan, graph: graph, model: model)
        try StructuredPruner.apply(merged, graph: graph, to: model)
        XCTAssertEqual(model.config.intermediateSizes, [6])
        let after = try model.forward(Graph(), tokens: tokens).value.array
        XCTAssertLessThan(zip(before, after).map { abs($0 - $1) }.max()!, 1e-4)

        // Plain removal of the same number of channels changes the function (the test can fail).
        let removedOnly = try duplicated()
        try StructuredPruner.apply(plan, graph: graph, to: removedOnly)
        let dropped = try removedOnly.forward(Graph(), tokens: tokens).value.array
        XCTAssertGreaterThan(zip(before, dropped).map { abs($0 - $1) }.max()!, 1e-2)
    }
}
