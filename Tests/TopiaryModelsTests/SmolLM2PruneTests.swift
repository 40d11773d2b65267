import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGGUF
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import XCTest

final class SmolLM2PruneTests: XCTestCase {
    func testGraphHas61GroupsOfTheExpectedShapes() throws {
        let model = try GGUFModelLoader.load(path: try smolLM2Path()).model
        let graph = try DependencyGraphBuilder().build(model: model)
        XCTAssertEqual(graph.groups.count, 61)
        let attention = graph.groups.filter { $0.kind == "attention" }, mlp = graph.groups.filter { $0.kind == "mlp" }
        XCTAssertEqual(attention.count, 30)
        XCTAssertEqual(mlp.count, 30)
        for g in attention {
            XCTAssertEqual(g.units, 3)
            let l = try XCTUnwrap(g.layer)
            let m = Dictionary(uniqueKeysWithValues: g.members.map { ("\($0.tensor)#\($0.axis)", $0.channelsPerUnit) })
            XCTAssertEqual(
                m,
                [
                    "model.layers.\(l).self_attn.q_proj.weight#0": 192, "model.layers.\(l).self_attn.k_proj.weight#0": 64,
                    "model.layers.\(l).self_attn.v_proj.weight#0": 64, "model.layers.\(l).self_attn.o_proj.weight#1": 192,
                ])
        }
        for g in mlp {
            XCTAssertEqual(g.units, 1536)
            XCTAssertEqual(g.members.count, 3)
        }
        let hidden = try XCTUnwrap(graph.groups.first { $0.kind == "hidden" })
        XCTAssertEqual(hidden.units, 576)
        XCTAssertEqual(hidden.members.count, 272)  // embedding + 30 × 9 per-layer members + final norm
        // The committed graph is the one discovered now.
        let committed = try JSONDecoder().decode(
            DependencyGraph.self, from: Data(contentsOf: URL(fileURLWithPath: repoRoot() + "/graphs/smollm2-135m-instruct.json")))
        XCTAssertEqual(committed.groups, graph.groups)
    }

    /// The LLM-Pruner-style 20% plan: Taylor Σ|w·g| on 10 × 128 calibration tokens at offset 32,768,
    /// layers 3–27, kept MLP channels rounded to 64 — the PyTorch reference plan, unit for unit.
    func testTaylorPlanMatchesThePyTorchReferenceAndItsPerplexity() throws {
        let (loaded, tokens) = try SmolLM2.load()
        let model = try GGUFModelLoader.load(path: try smolLM2Path()).model  // a fresh copy to prune
        let graph = try DependencyGraphBuilder().build(model: model)
        let set = try CalibrationSet(tokens: tokens, windows: 10, length: 128, offset: 32768)
        let loss = try Calibration.accumulateGradients(model, set)
        XCTAssertEqual(loss, 4.20918, accuracy: 0.0005)
        let removals = try StructuredPruner(ratio: 0.2, layers: 3...27, roundTo: 64)
            .plan(model: model, graph: graph, estimator: CriterionEstimator(criterion: .taylor, aggregation: .sum))
        let reference =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: try dataPath("../reference/structured20_plan.json")))) as! [String: Any]
        let layers = reference["layers"] as! [String: [String: Any]]
        XCTAssertEqual(removals.count, 50)
        for r in removals {
            let ref = try XCTUnwrap(layers["\(try XCTUnwrap(r.layer))"])
            if r.kind == "attention" {
                XCTAssertEqual(r.removedUnits, [ref["dropped_kv_group"] as! Int], "layer \(r.layer!)")
                for (ours, theirs) in zip(r.scores, ref["kv_group_importance"] as! [Double]) {
                    XCTAssertEqual(ours, theirs, accuracy: 1e-3 * theirs, "layer \(r.layer!)")
                }
            } else {
                XCTAssertEqual(r.removedUnits, ref["dropped_mlp_channels"] as! [Int], "layer \(r.layer!)")
            }
        }
        try StructuredPruner.apply(removals, graph: graph, to: model)
        for p in model.parameters { p.zeroGrad() }
        XCTAssertEqual(model.parameterCount, 113_318_208)
        let ppl = try PerplexityEvaluator(window: 512, maxWindows: 64).evaluate(model, tokens: tokens).ppl
        XCTAssertEqual(ppl, 118.4336, accuracy: 0.05)

        // Saved and loaded again, the model gives the same numbers; the loaded config has the per-layer shapes.
        let dir = NSTemporaryDirectory() + "topiary-ckpt-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Checkpoint.save(model: model, tokenizerMetadata: loaded.metadata, to: dir)
        let reloaded = try ModelLoader.load(path: dir)
        XCTAssertEqual(reloaded.model.config, model.config)
        XCTAssertEqual(reloaded.model.config.heads[3], 6)
        XCTAssertEqual(reloaded.model.config.intermediateSizes[3], 1216)
        XCTAssertEqual(reloaded.tokenizer.encode("University is 42"), loaded.tokenizer.encode("University is 42"))
        let a = try PerplexityEvaluator(window: 512, maxWindows: 4).evaluate(model, tokens: tokens).ppl
        let b = try PerplexityEvaluator(window: 512, maxWindows: 4).evaluate(reloaded.model, tokens: tokens).ppl
        XCTAssertEqual(a, b)
    }

    func testDamagedCheckpointsAreRefused() throws {
        let model = try DecoderModel(
            config: ModelConfig(
                architecture: "llama", vocabSize: 300, hiddenSize: 8, headDim: 4, heads: [2],
                kvHeads: [1], intermediateSizes: [6], ropeTheta: 10_000, rmsNormEps: 1e-5,
                contextLength: 32, tieWordEmbeddings: true),
            weights: tinyWeights())
        let md = try GGUFFile(path: try smolLM2Path()).metadata
        let dir = NSTemporaryDirectory() + "topiary-bad-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func fresh() throws { try Checkpoint.save(model: model, tokenizerMetadata: md, to: dir) }
        try fresh()
        XCTAssertNoThrow(try ModelLoader.load(path: dir))
        // A changed byte in the weights.
        let weights = dir + "/model.safetensors"
        var data = try Data(contentsOf: URL(fileURLWithPath: weights))
        data[data.count - 1] ^= 0xFF
        try data.write(to: URL(fileURLWithPath: weights))
        XCTAssertThrowsError(try ModelLoader.load(path: dir)) { XCTAssertTrue($0.localizedDescription.contains("damaged"), "\($0)") }
        // No manifest (an interrupted save).
        try fresh()
        try FileManager.default.removeItem(atPath: dir + "/manifest.json")
        XCTAssertThrowsError(try ModelLoader.load(path: dir)) { XCTAssertTrue($0.localizedDescription.contains("manifest"), "\($0)") }
        // A config whose shapes disagree with the weights (manifest rewritten to match, as a hand edit would).
        try fresh()
        let config = dir + "/config.json"
        let text = try String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(
            of: "\"intermediate_size\" : 6", with: "\"intermediate_size\" : 5")
        try text.write(toFile: config, atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: dir + "/manifest.json")
        try Checkpoint.writeManifest(directory: dir)
        XCTAssertThrowsError(try ModelLoader.load(path: dir)) {
            XCTAssertTrue($0.localizedDescription.contains("mlp.gate_proj.weight"), "\($0)")
            XCTAssertTrue($0.localizedDescription.contains("model.safetensors"), "\($0)")
        }
        // A missing tensor.
        try fresh()
        var w = try Safetensors.read(path: weights).tensors
        w.removeValue(forKey: "model.layers.0.mlp.up_proj.weight")
        try Safetensors.write(w.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, to: weights)
        try FileManager.default.removeItem(atPath: dir + "/manifest.json")
        try Checkpoint.writeManifest(directory: dir)
        XCTAssertThrowsError(try ModelLoader.load(path: dir)) {
            XCTAssertTrue($0.localizedDescription.contains("missing tensor 'model.layers.0.mlp.up_proj.weight'"), "\($0)")
        }
    }

    func tinyWeights() -> [String: Tensor] {
        var rng = SplitMix64(seed: 2)
        func t(_ s: [Int]) -> Tensor { Tensor(shape: s, values: (0..<s.reduce(1, *)).map { _ in rng.nextFloat(-0.5, 0.5) }) }
        var w = ["model.embed_tokens.weight": t([300, 8]), "model.norm.weight": t([8])]
        let n = DecoderModel.parameterNames(layer: 0)
        for (name, shape) in zip(n, [[8], [8, 8], [4, 8], [4, 8], [8, 8], [8], [6, 8], [6, 8], [8, 6]]) { w[name] = t(shape) }
        return w
    }

    /// Hardware-aware widths chosen in the plan: at multiples of 256 (K-quant rows) the nearest rounding misses the 20%
    /// budget (every layer lands on the same multiple); the budget rounding mixes two neighbouring multiples across
    /// layers and removes 20% within half a multiple.
    func testBudgetRoundingMeetsTheRatioAtMultiplesOf256() throws {
        let model = try GGUFModelLoader.load(path: try smolLM2Path()).model
        let graph = try DependencyGraphBuilder().build(model: model)
        let shapes = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0.shape) })
        let nonEmbedding = Double(model.parameterCount - model.config.vocabSize * model.config.hiddenSize)
        func removed(_ rounding: StructuredPruner.Rounding) throws -> (fraction: Double, widths: [Int]) {
            var pruner = StructuredPruner(ratio: 0.2, layers: 3...27, roundTo: 256)
            pruner.rounding = rounding
            let counts = try pruner.removalCounts(model: model, graph: graph)
            var params = 0
            var widths: [Int] = []
            for g in graph.groups where counts[g.id] != nil {
                params += counts[g.id]! * g.parametersPerUnit(shapes: shapes)
                if g.kind == "mlp" { widths.append(g.units - counts[g.id]!) }
            }
            return (Double(params) / nonEmbedding, widths)
        }
        let nearest = try removed(.nearest), budget = try removed(.budget)
        XCTAssertEqual(Set(nearest.widths).count, 1)
        XCTAssertGreaterThan(abs(nearest.fraction - 0.2), 0.01, "\(nearest)")
        XCTAssertEqual(budget.fraction, 0.2, accuracy: 0.003)
        XCTAssertTrue(budget.widths.allSatisfy { $0 % 256 == 0 }, "\(budget.widths)")
        XCTAssertEqual(Set(budget.widths).count, 2, "\(budget.widths)")
        print("round-to 256, 20% of layers 3-27: nearest \(nearest), budget \(budget)")
    }
}
