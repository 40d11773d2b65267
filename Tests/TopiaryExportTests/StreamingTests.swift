import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryExport
import TopiaryGGUF
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import XCTest

/// A tiny Qwen2-shaped model (q/k/v biases, GQA, untied output) with random weights: the streamed path
/// (weights left in the GGUF file, one layer dequantized at a time) must give the same outputs, gradients,
/// pruned and sparsified models as the in-memory path.
final class StreamingTests: XCTestCase {
    static let layers = 4, hidden = 32, heads = 4, kvHeads = 2, headDim = 8, ffn = 24, vocab = 64

    static func tinyQwen2() throws -> DecoderModel {
        var rng = SplitMix64(seed: 11)
        func t(_ s: [Int], _ scale: Float = 0.3) -> Tensor {
            Tensor(shape: s, values: (0..<s.reduce(1, *)).map { _ in rng.nextFloat(-scale, scale) })
        }
        func norm() -> Tensor { Tensor(shape: [hidden], values: (0..<hidden).map { _ in 1 + rng.nextFloat(-0.1, 0.1) }) }
        var config = ModelConfig(
            architecture: "qwen2", vocabSize: vocab, hiddenSize: hidden, headDim: headDim,
            heads: Array(repeating: heads, count: layers), kvHeads: Array(repeating: kvHeads, count: layers),
            intermediateSizes: Array(repeating: ffn, count: layers), ropeTheta: 10_000, rmsNormEps: 1e-6,
            contextLength: 128, tieWordEmbeddings: false)
        config.attentionBias = true
        var w = ["model.embed_tokens.weight": t([vocab, hidden], 1), "model.norm.weight": norm(), "lm_head.weight": t([vocab, hidden])]
        let nq = heads * headDim, nkv = kvHeads * headDim
        for l in 0..<layers {
            let n = DecoderModel.parameterNames(layer: l, config: config)
            w[n.attentionNorm] = norm(); w[n.ffnNorm] = norm()
            w[n.q] = t([nq, hidden]); w[n.k] = t([nkv, hidden]); w[n.v] = t([nkv, hidden]); w[n.o] = t([hidden, nq])
            w[n.qBias] = t([nq], 0.5); w[n.kBias] = t([nkv], 0.5); w[n.vBias] = t([nkv], 0.5)
            w[n.gate] = t([ffn, hidden]); w[n.up] = t([ffn, hidden]); w[n.down] = t([hidden, ffn])
        }
        return try DecoderModel(config: config, weights: w)
    }

    static var tokenizerMetadata: [String: GGUFValue] {
        let tokens = (0..<vocab).map { i in i < 26 ? String(UnicodeScalar(97 + i)!) : "t\(i)" }
        return [
            "tokenizer.ggml.model": .string("gpt2"), "tokenizer.ggml.pre": .string("qwen2"),
            "tokenizer.ggml.tokens": .array(tokens.map(GGUFValue.string)), "tokenizer.ggml.merges": .array([]),
            "tokenizer.ggml.eos_token_id": .uint32(63),
        ]
    }

    /// The tiny model written as an F32 GGUF (the layout the streamed loader reads).
    func tinyFile() throws -> String {
        let path = temporaryPath(self, "qwen2-\(name.filter(\.isLetter)).gguf")
        try GGUFExporter.export(model: try Self.tinyQwen2(), sourceMetadata: Self.tokenizerMetadata, to: path)
        return path
    }

    let tokens: [Int32] = (0..<48).map { Int32(($0 * 37 + 5) % 64) }

    func calibration() throws -> CalibrationSet {
        try CalibrationSet(tokens: (0..<200).map { Int32(($0 * 13 + 3) % 64) }, windows: 3, length: 16, offset: 8)
    }

    func testQwen2RoundTripAndStreamedForwardMatchInMemory() throws {
        let original = try Self.tinyQwen2()
        let path = try tinyFile()
        let memory = try GGUFModelLoader.load(path: path).model
        let streamed = try GGUFModelLoader.load(path: path, streamLayers: 1).model as! DecoderModel
        XCTAssertEqual(memory.config.architecture, "qwen2")
        XCTAssertTrue(memory.config.attentionBias)
        XCTAssertEqual(streamed.parameterCount, original.parameterCount)
        let reference = try logits(original, tokens)
        XCTAssertLessThan(maxAbsDifference(try logits(memory, tokens), reference), 1e-6, "qwen2 export → load changes the model")
        // Without the biases the model would differ (the test can fail).
        let noBias = try Self.tinyQwen2()
        for layer in noBias.layers { layer.qBias!.value = Tensor(zeros: layer.qBias!.shape) }
        XCTAssertGreaterThan(maxAbsDifference(try logits(noBias, tokens), reference), 1e-3)

        XCTAssertFalse(streamed.layers[0].q.isResident, "a streamed model starts with no layer in memory")
        let out = try logits(streamed, tokens)
        XCTAssertEqual(out, try logits(memory, tokens), "streamed and in-memory logits differ")
        XCTAssertEqual(streamed.store!.residentLayers, [Self.layers - 1], "at most --stream-layers layers stay resident")
        XCTAssertEqual(streamed.store!.loads, Self.layers)
        XCTAssertFalse(streamed.embedding.isResident, "the embedding is gathered row by row, never loaded whole")
    }

    func testLayerwiseGradientsMatchOneTape() throws {
        let path = try tinyFile()
        let set = try calibration()
        let memory = try GGUFModelLoader.load(path: path).model as! DecoderModel
        for p in memory.parameters { p.requiresGrad = p.name.contains(".layers.") }
        let loss = try Calibration.accumulateGradients(memory, set)
        let streamed = try GGUFModelLoader.load(path: path, streamLayers: 1).model as! DecoderModel
        for p in streamed.parameters { p.requiresGrad = p.name.contains(".layers.") }
        var visited: [Int] = []
        let streamedLoss = try Calibration.layerwiseGradients(streamed, set) { l in
            visited.append(l)
            XCTAssertLessThanOrEqual(streamed.store!.residentLayers.count, 1)
            for (a, b) in zip(streamed.layers[l].all, memory.layers[l].all) {
                let ga = try XCTUnwrap(a.grad, a.name).array, gb = try XCTUnwrap(b.grad, b.name).array
                let norm = gb.reduce(0) { max($0, abs($1)) }
                XCTAssertGreaterThan(norm, 0, b.name)
                XCTAssertLessThan(maxAbsDifference(ga, gb) / norm, 1e-4, "gradient of \(a.name)")
            }
        }
        XCTAssertEqual(visited, Array((0..<Self.layers).reversed()))
        XCTAssertEqual(streamedLoss, loss, accuracy: 1e-5)
        XCTAssertNil(streamed.layers[0].q.grad, "gradients are cleared after each layer")
    }

    func testStreamedStructuredPruneWritesTheSameModel() throws {
        let path = try tinyFile()
        let set = try calibration()
        let pruner = StructuredPruner(ratio: 0.3, layers: 1...3)
        // In memory: one tape, plan, slice.
        let memory = try GGUFModelLoader.load(path: path).model as! DecoderModel
        let graph = try DependencyGraphBuilder().build(model: memory)
        try Calibration.accumulateGradients(memory, set)
        let removals = try pruner.plan(model: memory, graph: graph, estimator: CriterionEstimator(criterion: .taylor, aggregation: .sum))
        try StructuredPruner.apply(removals, graph: graph, to: memory)
        XCTAssertTrue(removals.contains { $0.kind == "attention" } && removals.contains { $0.kind == "mlp" })

        // Streamed: traced without keeping weights, scored layer by layer, written tensor by tensor.
        let loaded = try GGUFModelLoader.load(path: path, streamLayers: 1)
        let streamed = loaded.model as! DecoderModel
        let streamedGraph = try DependencyGraphBuilder().build(model: streamed)
        XCTAssertEqual(streamedGraph.groups, graph.groups, "the trace of a streamed model finds the same groups")
        XCTAssertTrue(
            graph.groups.contains { g in g.kind == "attention" && g.members.contains { $0.tensor.hasSuffix("q_proj.bias") } },
            "q/k/v biases shrink with their heads")
        let params = Dictionary(uniqueKeysWithValues: streamed.parameters.map { ($0.name, $0) })
        let estimator = CriterionEstimator(criterion: .taylor, aggregation: .sum)
        var scores: [Int: [Double]] = [:]
        try Calibration.layerwiseGradients(streamed, set) { l in
            for g in streamedGraph.groups where g.layer == l && (g.kind == "attention" || g.kind == "mlp") {
                scores[g.id] = try estimator.scores(for: g, parameters: params)
            }
        }
        let streamedRemovals = try pruner.plan(model: streamed, graph: streamedGraph, estimator: PrecomputedScores(scores))
        XCTAssertEqual(streamedRemovals.map(\.removedUnits), removals.map(\.removedUnits))
        let removed = try StructuredPruner.removedIndices(streamedRemovals, graph: streamedGraph)
        let config = try StructuredPruner.prunedConfig(streamed, removed: removed)
        XCTAssertEqual(config, memory.config)
        let out = temporaryPath(self, "pruned.gguf")
        try GGUFExporter.exportStreamed(
            model: streamed, config: config, sourceMetadata: loaded.metadata, to: out,
            options: GGUFExportOptions(type: .f32), prepareLayer: { try streamed.store!.use(layer: $0) },
            changed: { removed[$0.name] != nil },
            tensor: { p, _ in StructuredPruner.slice(p.value, removing: removed[p.name] ?? [:]) })
        let reloaded = try GGUFModelLoader.load(path: out).model
        XCTAssertEqual(reloaded.config, memory.config)
        XCTAssertEqual(reloaded.parameterCount, memory.parameterCount)
        XCTAssertLessThan(maxAbsDifference(try logits(reloaded, tokens), try logits(memory, tokens)), 1e-4)
    }

    func testStreamedWandaWritesTheSameModel() throws {
        let path = try tinyFile()
        let set = try calibration()
        var sparsifier = Sparsifier(method: .wanda, sparsity: 0.5)
        sparsifier.windowsPerPass = 2
        let memory = try GGUFModelLoader.load(path: path).model as! DecoderModel
        let achieved = try sparsifier.run(model: memory, calibration: set)
        XCTAssertEqual(achieved, 0.5, accuracy: 0.01)

        let loaded = try GGUFModelLoader.load(path: path, streamLayers: 1)
        let streamed = loaded.model as! DecoderModel
        let stepper = try sparsifier.sequentialSparsifier(model: streamed, calibration: set)
        let linears = Set(streamed.layers.flatMap { [$0.q, $0.k, $0.v, $0.o, $0.gate, $0.up, $0.down].map(\.name) })
        let out = temporaryPath(self, "wanda.gguf")
        let report = try GGUFExporter.exportStreamed(
            model: streamed, config: streamed.config, sourceMetadata: loaded.metadata, to: out,
            options: GGUFExportOptions(type: .f32), prepareLayer: { try stepper.advance(through: $0) },
            changed: { linears.contains($0.name) }, tensor: { p, _ in p.value })
        XCTAssertEqual(stepper.next, Self.layers)
        XCTAssertTrue(report.tensors.contains { $0.name == "output.weight" && $0.note == "copied from the source" })
        let reloaded = try GGUFModelLoader.load(path: out).model as! DecoderModel
        for (a, b) in zip(reloaded.layers, memory.layers) {
            for (x, y) in zip([a.q, a.k, a.v, a.o, a.gate, a.up, a.down], [b.q, b.k, b.v, b.o, b.gate, b.up, b.down]) {
                XCTAssertEqual(x.value.zeroCount, y.value.zeroCount, x.name)
                XCTAssertLessThan(maxAbsDifference(x.value.array, y.value.array), 1e-6, x.name)
            }
        }
        XCTAssertLessThan(maxAbsDifference(try logits(reloaded, tokens), try logits(memory, tokens)), 1e-5)
    }
}

extension StreamingTests {
    /// A LLaMA with a tied output (q/k rows permuted in the GGUF): the streamed path undoes the permutation per layer
    /// and the head loads the shared embedding table, which the embedding then uses whole.
    func testStreamedTiedLlamaMatchesInMemory() throws {
        let original = try tinyModel(heads: [4, 4], kvHeads: [2, 2], ffn: [32, 32], hidden: 32, headDim: 8, vocab: 64, tied: true)
        let path = temporaryPath(self, "llama-tied.gguf")
        try GGUFExporter.export(model: original, sourceMetadata: Self.tokenizerMetadata, to: path)
        let streamed = try GGUFModelLoader.load(path: path, streamLayers: 1).model as! DecoderModel
        XCTAssertTrue(streamed.config.tieWordEmbeddings)
        let reference = try logits(original, tokens)
        XCTAssertLessThan(maxAbsDifference(try logits(streamed, tokens), reference), 1e-5)
        XCTAssertTrue(streamed.embedding.isResident, "the tied head loaded the table")
        XCTAssertLessThan(maxAbsDifference(try logits(streamed, tokens), reference), 1e-5, "second call, table resident")
    }

    func testPruneByBiasOnQwen2AndNotApplicableWithoutBiases() throws {
        for method in [SparsifyMethod.bias, .negBias] {
            let model = try Self.tinyQwen2()
            let before = model.layers[0].q.value.array
            try Sparsifier(method: method, sparsity: 0.5).run(model: model, calibration: nil)
            let layer = model.layers[0], cols = Self.hidden
            let bias = layer.qBias!.value.array.map(abs)
            let zeroRows = (0..<layer.q.shape[0]).filter { r in (0..<cols).allSatisfy { layer.q.value[r * cols + $0] == 0 } }
            XCTAssertEqual(zeroRows.count, layer.q.shape[0] / 2, "\(method): half the rows of q_proj")
            let kept = Set(0..<layer.q.shape[0]).subtracting(zeroRows)
            // bias: every removed row has a smaller |bias| than every kept one; neg-bias: larger.
            if method == .bias {
                XCTAssertLessThanOrEqual(zeroRows.map { bias[$0] }.max()!, kept.map { bias[$0] }.min()!)
            } else {
                XCTAssertGreaterThanOrEqual(zeroRows.map { bias[$0] }.min()!, kept.map { bias[$0] }.max()!)
            }
            for r in kept { XCTAssertEqual((0..<cols).map { layer.q.value[r * cols + $0] }, (0..<cols).map { before[r * cols + $0] }) }
            XCTAssertEqual(layer.down.value.zeroCount, 0, "a linear without a bias stays dense")
        }
        let llama = try tinyModel(heads: [2], kvHeads: [1], ffn: [16], hidden: 16, headDim: 8, vocab: 32)
        XCTAssertThrowsError(try Sparsifier(method: .bias, sparsity: 0.5).run(model: llama, calibration: nil)) { error in
            XCTAssertTrue(error.localizedDescription.contains("not applicable"), error.localizedDescription)
        }
    }
}

/// The real DeepSeek-R1-Distill-Qwen-7B header (the first part of its split download, `make qwen7b-model`) and its
/// tokenizer against llama.cpp. Skipped without the part (it is 95 MB and never in git or CI).
final class Qwen2HeaderTests: XCTestCase {
    func firstPart() throws -> String {
        let p = repoRoot() + "/checkpoints/models/qwen7b-parts/model_part_0000"
        guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("\(p) not found (make qwen7b-model fetches it)") }
        return p
    }

    func testHeaderOfTheFirstPartTellsTheWholeFile() throws {
        let path = try firstPart()
        let header = try GGUFFile(path: path, headerOnly: true)
        XCTAssertEqual(header.architecture, "qwen2")
        XCTAssertEqual(header.tensors.count, 339)
        XCTAssertEqual(header.requiredSize, 4_683_073_248)
        XCTAssertEqual(header.tensors.reduce(0) { $0 + $1.elementCount }, 7_615_616_512)
        // Reading a tensor that is not in this part fails with the file named; opening it as a model fails too.
        XCTAssertThrowsError(try header.dequantize(header.tensor(named: "blk.27.ffn_down.weight")!)) { error in
            XCTAssertTrue("\(error.localizedDescription)".contains("model_part_0000"), "\(error)")
        }
        XCTAssertThrowsError(try GGUFFile(path: path))
    }

    func testTokenizerMatchesLlamaCpp() throws {
        let header = try GGUFFile(path: try firstPart(), headerOnly: true)
        let tokenizer = try GGUFModelLoader.tokenizerFromMetadata(header.metadata, name: "model_part_0000")
        let fixture = try XCTUnwrap(
            JSONSerialization.jsonObject(
                with: Data(
                    contentsOf: Bundle.module.url(
                        forResource: "Fixtures/qwen2_strings.json", withExtension: nil)!)) as? [String: Any])
        let cases = try XCTUnwrap(fixture["cases"] as? [[String: Any]])
        XCTAssertGreaterThan(cases.count, 30)
        for c in cases {
            let text = c["text"] as! String, ids = c["ids"] as! [Int]
            XCTAssertEqual(tokenizer.encode(text, addSpecialTokens: false, parseSpecial: false), ids, text)
        }
    }
}
