import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import XCTest

final class DependencyGraphTests: XCTestCase {
    func summary(_ g: DependencyGraph) -> [String] {
        g.groups.map { grp in
            "\(grp.kind)@\(grp.layer.map(String.init) ?? "-") ×\(grp.units): "
                + grp.members.map { "\($0.tensor)#\($0.axis)×\($0.channelsPerUnit)" }.sorted().joined(separator: " ")
        }
    }

    func testGroupedQueryLlamaHasHeadChannelAndHiddenGroups() throws {
        let model = try tinyLlama()
        let graph = try DependencyGraphBuilder().build(model: model)
        XCTAssertEqual(graph.groups.count, 5, summary(graph).joined(separator: "\n"))
        let attention = graph.groups.filter { $0.kind == "attention" }
        XCTAssertEqual(attention.map(\.units), [2, 2])
        let members = Dictionary(uniqueKeysWithValues: attention[0].members.map { ("\($0.tensor)#\($0.axis)", $0.channelsPerUnit) })
        XCTAssertEqual(
            members,
            [
                "model.layers.0.self_attn.q_proj.weight#0": 8, "model.layers.0.self_attn.k_proj.weight#0": 4,
                "model.layers.0.self_attn.v_proj.weight#0": 4, "model.layers.0.self_attn.o_proj.weight#1": 8,
            ])
        let mlp = graph.groups.filter { $0.kind == "mlp" }
        XCTAssertEqual(mlp.map(\.units), [12, 12])
        XCTAssertEqual(
            Set(mlp[1].members.map { "\($0.tensor)#\($0.axis)" }),
            ["model.layers.1.mlp.gate_proj.weight#0", "model.layers.1.mlp.up_proj.weight#0", "model.layers.1.mlp.down_proj.weight#1"])
        let hidden = try XCTUnwrap(graph.groups.first { $0.kind == "hidden" })
        XCTAssertEqual(hidden.units, 16)
        XCTAssertNil(hidden.layer)
        // Embedding columns, every norm, q/k/v/gate/up columns, o/down rows: 1 + 1 + 2 × (2 + 7) = 20 members.
        XCTAssertEqual(hidden.members.count, 20)
        XCTAssertTrue(hidden.members.contains { $0.tensor == "model.embed_tokens.weight" && $0.axis == 1 })
        XCTAssertTrue(graph.fixedAxes.contains("model.embed_tokens.weight#0"))
    }

    func testGPTStyleModelWithBiasesLayerNormGELUAndUntiedHead() throws {
        let model = TinyGPT()
        let graph = try DependencyGraphBuilder().build(model: model)
        XCTAssertEqual(graph.groups.count, 5, summary(graph).joined(separator: "\n"))
        let attention = graph.groups.filter { $0.kind == "attention" }
        XCTAssertEqual(attention.map(\.units), [3, 3])  // plain multi-head attention: one unit per head
        XCTAssertEqual(
            Set(attention[0].members.map { "\($0.tensor)#\($0.axis)×\($0.channelsPerUnit)" }),
            [
                "h.0.attn.q.weight#0×4", "h.0.attn.q.bias#0×4", "h.0.attn.k.weight#0×4", "h.0.attn.k.bias#0×4",
                "h.0.attn.v.weight#0×4", "h.0.attn.v.bias#0×4", "h.0.attn.proj.weight#1×4",
            ])
        let mlp = graph.groups.filter { $0.kind == "mlp" }
        XCTAssertEqual(mlp.map(\.units), [10, 10])
        XCTAssertEqual(
            Set(mlp[0].members.map { "\($0.tensor)#\($0.axis)" }), ["h.0.mlp.fc.weight#0", "h.0.mlp.fc.bias#0", "h.0.mlp.proj.weight#1"])
        let hidden = try XCTUnwrap(graph.groups.first { $0.kind == "hidden" })
        XCTAssertEqual(hidden.units, 12)
        XCTAssertTrue(hidden.members.contains { $0.tensor == "lm_head.weight" && $0.axis == 1 })
        XCTAssertTrue(hidden.members.contains { $0.tensor == "h.1.attn.proj.bias" && $0.axis == 0 })
        XCTAssertTrue(graph.fixedAxes.contains("lm_head.weight#0"))
    }

    func testConcatAndSliceMapChannelOffsets() throws {
        // y = concat(x·A, x·B) · C: A's and B's rows map to C's columns at offsets; a slice maps back.
        var rng = SplitMix64(seed: 9)
        let a = Parameter(name: "a", value: randomTensor([3, 4], &rng)), b = Parameter(name: "b", value: randomTensor([2, 4], &rng))
        let c = Parameter(name: "c", value: randomTensor([5, 5], &rng))
        let g = Graph(recording: true)
        let x = g.input(randomTensor([2, 4], &rng))
        let y = try g.concat([g.linear(x, g.parameter(a)), g.linear(x, g.parameter(b))], axis: 1)
        let out = try g.linear(g.silu(y), g.parameter(c))
        let graph = try DependencyGraphBuilder().build(records: g.records, outputs: [out.node])
        let channel = try XCTUnwrap(graph.groups.first { $0.members.contains { $0.tensor == "a" } })
        XCTAssertEqual(channel.units, 3)
        let cMember = try XCTUnwrap(channel.members.first { $0.tensor == "c" })
        XCTAssertEqual(cMember.axis, 1)
        XCTAssertEqual((0..<3).map { cMember.channels(ofUnit: $0) }, [[0], [1], [2]])
        let bGroup = try XCTUnwrap(graph.groups.first { $0.members.contains { $0.tensor == "b" } })
        XCTAssertEqual(bGroup.members.first { $0.tensor == "c" }.map { m in (0..<2).map { m.channels(ofUnit: $0) } }, [[3], [4]])
    }

    /// For every head and channel group, removing a unit gives exactly the outputs of the original model
    /// with that unit's weights zeroed.
    func testRemovingAUnitEqualsZeroingIt() throws {
        let makers: [(String, () throws -> any LanguageModel)] = [
            ("llama", { try tinyLlama() }), ("llama-untied", { try tinyLlama(tied: false, seed: 5) }), ("gpt", { TinyGPT() }),
            ("gemma3-1kv", { try tinyGemma() }), ("gemma3-2kv", { try tinyGemma(layers: 2, kvHeads: 2, seed: 11) }),
        ]
        let tokens: [Int32] = [1, 5, 2, 7, 3, 9, 4]
        for (name, make) in makers {
            let reference = try make()
            let graph = try DependencyGraphBuilder().build(model: reference)
            for group in graph.groups where group.kind != "hidden" {
                for unit in [0, group.units - 1] {
                    let zeroed = try make(), pruned = try make()
                    let params = Dictionary(uniqueKeysWithValues: zeroed.parameters.map { ($0.name, $0) })
                    for m in group.members {
                        let t = params[m.tensor]!.value
                        let outer = t.shape[..<m.axis].reduce(1, *), inner = t.shape[(m.axis + 1)...].reduce(1, *)
                        for c in m.channels(ofUnit: unit) {
                            for o in 0..<outer { (t.pointer + (o * t.shape[m.axis] + c) * inner).update(repeating: 0, count: inner) }
                        }
                    }
                    let removal = GroupRemoval(
                        group: group.id, kind: group.kind, layer: group.layer, unitsBefore: group.units,
                        removedUnits: [unit], scores: [])
                    try StructuredPruner.apply([removal], graph: graph, to: pruned)
                    let a = try zeroed.forward(Graph(), tokens: tokens, batch: 1).value
                    let b = try pruned.forward(Graph(), tokens: tokens, batch: 1).value
                    XCTAssertEqual(a.shape, b.shape)
                    var worst: Float = 0
                    for i in 0..<a.count { worst = max(worst, abs(a[i] - b[i])) }
                    XCTAssertLessThan(worst, 1e-5, "\(name) \(group.kind) group \(group.id) unit \(unit)")
                    XCTAssertLessThan(pruned.parameterCount, reference.parameterCount)
                }
            }
        }
    }

    /// The rule of the grouped RMSNorm on its own: each group of channels (a head) shrinks as one unit, and
    /// the weight shared by every group never shrinks.
    func testGroupedRMSNormTiesEachGroupAndFixesItsSharedWeight() throws {
        var rng = SplitMix64(seed: 4)
        let a = Parameter(name: "a", value: randomTensor([6, 4], &rng)), w = Parameter(name: "w", value: randomTensor([2], &rng))
        let c = Parameter(name: "c", value: randomTensor([5, 6], &rng))
        let g = Graph(recording: true)
        let x = g.input(randomTensor([2, 4], &rng))
        let y = try g.groupedRMSNorm(g.linear(x, g.parameter(a)), g.parameter(w), groupSize: 2, eps: 1e-6)
        let out = try g.linear(y, g.parameter(c))
        let graph = try DependencyGraphBuilder().build(records: g.records, outputs: [out.node])
        let group = try XCTUnwrap(graph.groups.first { $0.members.contains { $0.tensor == "a" } })
        XCTAssertEqual(group.units, 3)
        XCTAssertEqual(group.members.map(\.tensor).sorted(), ["a", "c"])
        XCTAssertEqual(
            group.members.first { $0.tensor == "c" }.map { m in (0..<3).map { m.channels(ofUnit: $0) } },
            [[0, 1], [2, 3], [4, 5]])
        XCTAssertTrue(graph.fixedAxes.contains("w#0"))
        XCTAssertFalse(graph.groups.contains { $0.members.contains { $0.tensor == "w" } })
    }

    /// Gemma 3 with one KV head: a layer's attention is one unit (the KV head, the four query heads that read
    /// it and their q/k-norm'd channels); the q/k norm weights and head_dim cannot shrink; FFN channels are units.
    func testGemmaGroupsWithOneKVHead() throws {
        let graph = try DependencyGraphBuilder().build(model: try tinyGemma())
        let attention = graph.groups.filter { $0.kind == "attention" }
        XCTAssertEqual(attention.count, 3)
        XCTAssertTrue(attention.allSatisfy { $0.units == 1 })
        XCTAssertEqual(graph.groups.filter { $0.kind == "mlp" }.map(\.units), [12, 12, 12])
        XCTAssertTrue(graph.fixedAxes.contains("model.layers.0.self_attn.q_norm.weight#0"))
        let hidden = try XCTUnwrap(graph.groups.first { $0.kind == "hidden" })
        XCTAssertTrue(hidden.members.contains { $0.tensor == "model.layers.1.post_feedforward_layernorm.weight" })
    }
}
