import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGGUF
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import XCTest
@testable import TopiaryExport

/// Every family the registry lists goes through the whole path on a tiny model made here: prune → save → reload →
/// perplexity → GGUF export → reload, with the same numbers at each step (F32 throughout).
final class ArchitectureRoundTripTests: XCTestCase {
    static let vocab = 40

    /// A tiny random model of `family`'s decoder: LLaMA (tied), Qwen2 (q/k/v biases, untied), Gemma 3 (q/k norms,
    /// post-block norms, GeGLU, local and global layers).
    static func tinyModel(
        _ family: String, layers: Int = 3, hidden: Int = 32, heads: Int = 4, kvHeads: Int = 2, headDim: Int = 8,
        ffn: Int = 48, seed: UInt64 = 11
    ) throws -> DecoderModel {
        var rng = SplitMix64(seed: seed)
        let tied = family != "qwen2"
        var config = ModelConfig(
            architecture: family, vocabSize: vocab, hiddenSize: hidden, headDim: headDim,
            heads: Array(repeating: heads, count: layers), kvHeads: Array(repeating: kvHeads, count: layers),
            intermediateSizes: Array(repeating: ffn, count: layers), ropeTheta: 10_000, rmsNormEps: 1e-6,
            contextLength: 64, tieWordEmbeddings: tied)
        if family == "qwen2" { config.attentionBias = true }
        if family == "gemma3" {
            config.activation = "gelu_pytorch_tanh"
            config.embeddingScale = Float(hidden).squareRoot()
            config.queryKeyNorm = true
            config.postBlockNorms = true
            config.queryPreAttentionScalar = Float(headDim)
            config.slidingWindow = 4
            config.slidingLayers = (0..<layers).map { ($0 + 1) % 6 != 0 }
            config.localRopeTheta = 10_000
        }
        func t(_ s: [Int], _ scale: Float = 0.3) -> Tensor {
            Tensor(shape: s, values: (0..<s.reduce(1, *)).map { _ in rng.nextFloat(-scale, scale) })
        }
        func norm(_ n: Int) -> Tensor { Tensor(shape: [n], values: (0..<n).map { _ in 1 + rng.nextFloat(-0.1, 0.1) }) }
        var w = ["model.embed_tokens.weight": t([vocab, hidden], 1), "model.norm.weight": norm(hidden)]
        if !tied { w["lm_head.weight"] = t([vocab, hidden]) }
        for l in 0..<layers {
            let n = DecoderModel.parameterNames(layer: l, config: config)
            let nq = heads * headDim, nkv = kvHeads * headDim
            w[n.attentionNorm] = norm(hidden)
            w[n.ffnNorm] = norm(hidden)
            w[n.q] = t([nq, hidden]); w[n.k] = t([nkv, hidden]); w[n.v] = t([nkv, hidden]); w[n.o] = t([hidden, nq])
            w[n.gate] = t([ffn, hidden]); w[n.up] = t([ffn, hidden]); w[n.down] = t([hidden, ffn])
            if config.attentionBias { w[n.qBias] = t([nq]); w[n.kBias] = t([nkv]); w[n.vBias] = t([nkv]) }
            if config.queryKeyNorm { w[n.qNorm] = norm(headDim); w[n.kNorm] = norm(headDim) }
            if config.postBlockNorms { w[n.postAttentionNorm] = norm(hidden); w[n.postFFNNorm] = norm(hidden) }
        }
        return try DecoderModel(config: config, weights: w)
    }

    static var tokenizerMetadata: [String: GGUFValue] {
        let tokens = (0..<vocab).map { i in i < 26 ? String(UnicodeScalar(97 + i)!) : "t\(i)" }
        return [
            "tokenizer.ggml.model": .string("gpt2"), "tokenizer.ggml.pre": .string("default"),
            "tokenizer.ggml.tokens": .array(tokens.map(GGUFValue.string)), "tokenizer.ggml.merges": .array([]),
            "tokenizer.ggml.eos_token_id": .uint32(UInt32(vocab - 1)),
        ]
    }

    func roundTrip(_ family: String) throws {
        let model = try Self.tinyModel(family)
        var rng = SplitMix64(seed: 3)
        let tokens = (0..<96).map { _ in Int32(rng.nextDouble() * Double(Self.vocab - 1)) }
        let graph = try DependencyGraphBuilder().build(model: model)
        let removals = try StructuredPruner(ratio: 0.3, layers: 0...(model.config.layerCount - 1))
            .plan(model: model, graph: graph, estimator: CriterionEstimator(criterion: .l2, aggregation: .sum))
        try StructuredPruner.apply(removals, graph: graph, to: model)
        XCTAssertLessThan(model.config.intermediateSizes[0], 48, "\(family): the FFN was pruned")
        let evaluator = PerplexityEvaluator(window: 32, maxWindows: 3)
        let ppl = try evaluator.evaluate(model, tokens: tokens).ppl

        let dir = NSTemporaryDirectory() + "topiary-roundtrip-\(getpid())-\(family)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        try Checkpoint.save(model: model, tokenizerMetadata: Self.tokenizerMetadata, to: dir + "/model")
        let reloaded = try ModelLoader.load(path: dir + "/model")
        XCTAssertEqual(reloaded.model.config, model.config, family)
        XCTAssertEqual(try evaluator.evaluate(reloaded.model, tokens: tokens).ppl, ppl, family)

        let gguf = dir + "/model.gguf"
        let report = try GGUFExporter.export(model: reloaded.model, sourceMetadata: reloaded.metadata, to: gguf)
        let file = try GGUFFile(path: gguf)
        XCTAssertEqual(file.metadata["general.architecture"]?.string, report.architecture)
        let again = try ModelLoader.load(path: gguf)
        XCTAssertEqual(again.model.config.architecture, family)
        XCTAssertEqual(again.model.config.heads, model.config.heads, family)
        XCTAssertEqual(again.model.config.intermediateSizes, model.config.intermediateSizes, family)
        XCTAssertEqual(try evaluator.evaluate(again.model, tokens: tokens).ppl, ppl, accuracy: ppl * 1e-5, family)
    }

    func testLlamaPrunesSavesReloadsAndExports() throws { try roundTrip("llama") }
    func testQwen2PrunesSavesReloadsAndExports() throws { try roundTrip("qwen2") }
    func testGemma3PrunesSavesReloadsAndExports() throws { try roundTrip("gemma3") }

    /// The registry is the one list: each family reads back under its own name, and the names a message lists come from it.
    func testRegistryNamesEveryFamilyOnce() {
        let types = Architectures.all.map(\.modelType)
        XCTAssertEqual(Set(types).count, types.count)
        for f in Architectures.all {
            XCTAssertEqual(Architectures.family(modelType: f.modelType)?.modelType, f.modelType)
            for g in f.ggufArchitectures { XCTAssertEqual(Architectures.family(gguf: g)?.modelType, f.modelType) }
        }
        let message = ModelError.unsupportedArchitecture(path: "x", architecture: "mamba").localizedDescription
        for name in Architectures.supportedNames { XCTAssertTrue(message.contains(name), message) }
    }
}
