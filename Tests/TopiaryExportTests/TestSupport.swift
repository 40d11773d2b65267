import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGGUF
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import XCTest

/// The default model for real-model tests (skipped when absent; `make test` fetches it).
func smolLM2Path() throws -> String {
    if let p = ProcessInfo.processInfo.environment["TOPIARY_MODEL"], FileManager.default.fileExists(atPath: p) { return p }
    let p = repoRoot() + "/checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("SmolLM2 GGUF not found (run `make model`)") }
    return p
}

func repoRoot() -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
}

/// The evaluation data folder (../shared/data or $TOPIARY_DATA).
func dataPath(_ relative: String) throws -> String {
    let base = ProcessInfo.processInfo.environment["TOPIARY_DATA"] ?? repoRoot() + "/../shared/data"
    let p = base + "/" + relative
    guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("\(p) not found") }
    return p
}

/// A path in the temporary directory, removed (file or directory) when the test ends.
func temporaryPath(_ test: XCTestCase, _ name: String) -> String {
    let path = NSTemporaryDirectory() + "topiary-export-\(getpid())-" + name
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

enum SmolLM2 {
    nonisolated(unsafe) private static var cachedTokens: [Int32]?

    /// A fresh copy of the model (tests prune and change it) and the WikiText-2 test tokens.
    static func load() throws -> (LoadedModel, [Int32]) {
        let loaded = try GGUFModelLoader.load(path: try smolLM2Path())
        if let cachedTokens { return (loaded, cachedTokens) }
        let text = try String(contentsOfFile: try dataPath("wikitext-2-raw/test.txt"), encoding: .utf8)
        let tokens = loaded.tokenizer.encode(text, addSpecialTokens: false, parseSpecial: false).map(Int32.init)
        cachedTokens = tokens
        return (loaded, tokens)
    }

    /// The model with 20% of its non-embedding parameters removed by l2 importance in layers `layers`
    /// (per-layer shapes differ unless `layers` covers every layer).
    static func pruned<M: LanguageModel>(_ model: M, layers: ClosedRange<Int> = 3...27, roundTo: Int = 1) throws -> M {
        let graph = try DependencyGraphBuilder().build(model: model)
        let removals = try StructuredPruner(ratio: 0.2, layers: layers, roundTo: roundTo)
            .plan(model: model, graph: graph, estimator: CriterionEstimator(criterion: .l2, aggregation: .sum))
        try StructuredPruner.apply(removals, graph: graph, to: model)
        return model
    }
}

/// Perplexity on the first `windows` windows of 512 tokens (the papers' protocol, shortened).
func perplexity(_ model: any LanguageModel, _ tokens: [Int32], windows: Int = 2) throws -> Double {
    try PerplexityEvaluator(window: 512, maxWindows: windows).evaluate(model, tokens: tokens).ppl
}

/// Logits of one short sequence.
func logits(_ model: any LanguageModel, _ tokens: [Int32]) throws -> [Float] {
    try model.forward(Graph(recording: false), tokens: tokens, batch: 1, cache: nil, logits: .all).value.array
}

func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

/// A tiny LLaMA model with random weights (per-layer shapes as given).
func tinyModel(
    heads: [Int], kvHeads: [Int], ffn: [Int], hidden: Int = 64, headDim: Int = 16, vocab: Int = 96, seed: UInt64 = 7,
    tied: Bool = true
) throws -> DecoderModel {
    var rng = SplitMix64(seed: seed)
    func t(_ s: [Int], _ scale: Float = 0.3) -> Tensor {
        Tensor(shape: s, values: (0..<s.reduce(1, *)).map { _ in rng.nextFloat(-scale, scale) })
    }
    func norm() -> Tensor { Tensor(shape: [hidden], values: (0..<hidden).map { _ in 1 + rng.nextFloat(-0.1, 0.1) }) }
    var w = ["model.embed_tokens.weight": t([vocab, hidden], 1), "model.norm.weight": norm()]
    if !tied { w["lm_head.weight"] = t([vocab, hidden]) }
    for l in heads.indices {
        let n = DecoderModel.parameterNames(layer: l)
        let nq = heads[l] * headDim, nkv = kvHeads[l] * headDim, f = ffn[l]
        for (name, shape) in zip(
            n, [[hidden], [nq, hidden], [nkv, hidden], [nkv, hidden], [hidden, nq], [hidden], [f, hidden], [f, hidden], [hidden, f]])
        {
            w[name] = shape.count == 1 ? norm() : t(shape)
        }
    }
    let config = ModelConfig(
        architecture: "llama", vocabSize: vocab, hiddenSize: hidden, headDim: headDim, heads: heads, kvHeads: kvHeads,
        intermediateSizes: ffn, ropeTheta: 10_000, rmsNormEps: 1e-5, contextLength: 128, tieWordEmbeddings: tied)
    return try DecoderModel(config: config, weights: w)
}
