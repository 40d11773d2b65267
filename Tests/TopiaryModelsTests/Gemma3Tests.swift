import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGGUF
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import TopiaryTokenizers
import XCTest

/// Gemma 3 270M (Q4_K_M), skipped when absent (`make gemma3-model`); $TOPIARY_GEMMA3_MODEL overrides the path.
func gemma3Path() throws -> String {
    if let p = ProcessInfo.processInfo.environment["TOPIARY_GEMMA3_MODEL"], FileManager.default.fileExists(atPath: p) { return p }
    let p = repoRoot() + "/checkpoints/models/gemma-3-270m-q4_k_m.gguf"
    guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("Gemma 3 GGUF not found (run `make gemma3-model`)") }
    return p
}

/// The transformers reference (scripts/reference/gemma3_reference.py); skipped until it has been generated.
func gemma3Reference() throws -> [String: Any] {
    guard Bundle.module.url(forResource: "Fixtures/gemma3_reference.json", withExtension: nil) != nil else {
        throw XCTSkip("Fixtures/gemma3_reference.json not generated (scripts/reference/gemma3_reference.py)")
    }
    return try loadJSON("gemma3_reference.json")
}

/// One copy of the model and the WikiText-2 tokens for every test of this file.
enum Gemma3 {
    nonisolated(unsafe) private static var cached: (LoadedModel, [Int32])?
    static func load() throws -> (LoadedModel, [Int32]) {
        if let cached { return cached }
        let loaded = try GGUFModelLoader.load(path: try gemma3Path())
        let text = try String(contentsOfFile: try dataPath("wikitext-2-raw/test.txt"), encoding: .utf8)
        let tokens = loaded.tokenizer.encode(text, addSpecialTokens: false, parseSpecial: false).map(Int32.init)
        cached = (loaded, tokens)
        return (loaded, tokens)
    }
}

/// Against transformers' fp32 Gemma3ForCausalLM on the same GGUF (scripts/reference/gemma3_reference.py).
final class Gemma3Tests: XCTestCase {
    func testConfigurationMatchesTransformers() throws {
        let (loaded, _) = try Gemma3.load()
        let c = loaded.model.config
        let ref = try gemma3Reference()["config"] as! [String: Any]
        XCTAssertEqual(c.architecture, "gemma3")
        XCTAssertEqual(c.layerCount, ref["num_hidden_layers"] as? Int)
        XCTAssertEqual(c.hiddenSize, 640)
        XCTAssertEqual(c.heads, Array(repeating: 4, count: 18))
        XCTAssertEqual(c.kvHeads, Array(repeating: 1, count: 18))
        XCTAssertEqual(c.headDim, 256)
        XCTAssertEqual(c.vocabSize, 262_144)
        XCTAssertEqual(c.slidingWindow, ref["sliding_window"] as? Int)
        XCTAssertEqual(c.slidingLayers.map { $0 ? "sliding_attention" : "full_attention" }, ref["layer_types"] as? [String])
        XCTAssertEqual(c.queryPreAttentionScalar.map(Double.init), (ref["query_pre_attn_scalar"] as? NSNumber)?.doubleValue)
        XCTAssertEqual(c.activation, ref["hidden_activation"] as? String)
        XCTAssertEqual(c.embeddingScale, Float(640).squareRoot())
        XCTAssertEqual(loaded.model.parameterCount, 268_098_176)
    }

    func testWikiTextTokenizesLikeTransformers() throws {
        let (loaded, tokens) = try Gemma3.load()
        let ref = try gemma3Reference()
        XCTAssertEqual(tokens.count, ref["wikitext_count"] as? Int)
        XCTAssertEqual(Array(tokens.prefix(64)).map(Int.init), ref["wikitext_first_ids"] as? [Int])
        var weighted: UInt64 = 0
        for (i, v) in tokens.enumerated() { weighted = (weighted &+ UInt64(i) &* UInt64(v)) % (1 << 61) }
        XCTAssertEqual(weighted, (ref["wikitext_ids_weighted_sum"] as! NSNumber).uint64Value, "ids differ from the reference somewhere")
        let text = try String(contentsOfFile: try dataPath("wikitext-2-raw/test.txt"), encoding: .utf8)
        XCTAssertEqual(loaded.tokenizer.decode(tokens.map(Int.init), skipSpecialTokens: false), text)
        for c in ref["strings"] as! [[String: Any]] {
            let s = c["text"] as! String
            XCTAssertEqual(loaded.tokenizer.encode(s, addSpecialTokens: false, parseSpecial: false), c["ids"] as! [Int], s)
        }
        XCTAssertEqual(loaded.tokenizer.encode("Hello", addSpecialTokens: true, parseSpecial: false), ref["bos_ids_of_hello"] as? [Int])
    }

    func testLogitsOfAPromptMatchTransformers() throws {
        let (loaded, _) = try Gemma3.load()
        let p = try gemma3Reference()["prompt"] as! [String: Any]
        let ids = loaded.tokenizer.encode(p["text"] as! String, addSpecialTokens: false, parseSpecial: false)
        XCTAssertEqual(ids, p["ids"] as? [Int])
        let logits = try loaded.model.forward(Graph(), tokens: ids.map(Int32.init), batch: 1).value
        let vocab = loaded.model.config.vocabSize
        let positions = p["positions"] as! [Int], vocabIDs = p["vocab_ids"] as! [Int], expected = p["logits"] as! [[Double]]
        for (i, pos) in positions.enumerated() {
            for (j, v) in vocabIDs.enumerated() {
                XCTAssertEqual(Double(logits[pos * vocab + v]), expected[i][j], accuracy: 2e-3, "position \(pos), id \(v)")
            }
        }
        let last = (ids.count - 1) * vocab
        let argmax = (0..<vocab).max { logits[last + $0] < logits[last + $1] }!
        XCTAssertEqual(argmax, p["argmax_last"] as? Int)
    }

    /// The first windows of the WikiText-2 protocol, window by window (the full 64 × 512 run is in README).
    func testPerplexityWindowsMatchTransformers() throws {
        let (loaded, tokens) = try Gemma3.load()
        let ref = try gemma3Reference()["perplexity"] as! [String: Any]
        let sums = ref["window_nll_sums"] as! [Double]
        for w in 0..<2 {
            let r = try PerplexityEvaluator(window: 512, maxWindows: 1)
                .evaluate(loaded.model, tokens: Array(tokens[(w * 512)..<((w + 1) * 512)]))
            XCTAssertEqual(r.meanNLL * 511, sums[w], accuracy: sums[w] * 1e-3, "window \(w)")
        }
    }

    /// The graph of the real model: one attention unit per layer (1 KV head), 2,048 FFN channels per layer,
    /// the hidden width; removing a unit equals zeroing it.
    func testGraphGroupsAndRemovingEqualsZeroing() throws {
        let (loaded, _) = try Gemma3.load()
        let model = loaded.model
        let graph = try DependencyGraphBuilder().build(model: model, name: "gemma3-270m")
        XCTAssertEqual(graph.groups.filter { $0.kind == "attention" }.map(\.units), Array(repeating: 1, count: 18))
        XCTAssertEqual(graph.groups.filter { $0.kind == "mlp" }.map(\.units), Array(repeating: 2048, count: 18))
        XCTAssertEqual(graph.groups.filter { $0.kind == "hidden" }.map(\.units), [640])
        XCTAssertEqual(graph.groups.count, 37)
        XCTAssertTrue(graph.fixedAxes.contains("model.layers.0.self_attn.k_norm.weight#0"))
        // Zero layer 4's attention and 3 FFN channels of layer 7, then remove them: same logits.
        let tokens: [Int32] = [2, 651, 5279, 529, 9405, 563, 9079, 236764]
        let removals = try [("attention", 4, [0]), ("mlp", 7, [0, 1000, 2047])].map { kind, layer, units -> GroupRemoval in
            let group = try XCTUnwrap(graph.groups.first { $0.kind == kind && $0.layer == layer })
            return GroupRemoval(group: group.id, kind: kind, layer: layer, unitsBefore: group.units, removedUnits: units, scores: [])
        }
        let saved = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0.value.copy()) })
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0) })
        for r in removals {
            let group = graph.groups[r.group]
            for m in group.members {
                let t = params[m.tensor]!.value
                let outer = t.shape[..<m.axis].reduce(1, *), inner = t.shape[(m.axis + 1)...].reduce(1, *)
                for u in r.removedUnits {
                    for c in m.channels(ofUnit: u) {
                        for o in 0..<outer { (t.pointer + (o * t.shape[m.axis] + c) * inner).update(repeating: 0, count: inner) }
                    }
                }
            }
        }
        let zeroed = try model.forward(Graph(), tokens: tokens, batch: 1).value
        let copy = try DecoderModel(config: model.config, weights: params.mapValues { $0.value.copy() })
        try StructuredPruner.apply(removals, graph: graph, to: copy)
        XCTAssertEqual(copy.config.heads[4], 0)
        XCTAssertEqual(copy.config.intermediateSizes[7], 2045)
        let removed = try copy.forward(Graph(), tokens: tokens, batch: 1).value
        var worst: Float = 0
        for i in 0..<zeroed.count { worst = max(worst, abs(zeroed[i] - removed[i])) }
        XCTAssertLessThan(worst, 1e-3)
        for (name, p) in params { p.value = saved[name]! }
    }

    /// Two blocks of the real Gemma 3 removed: the local/global pattern follows the kept layers, and a checkpoint of it
    /// reloads with the same logits and every vocabulary entry intact (six tokens begin with U+FEFF, which Foundation's
    /// JSON reader used to drop: the exported GGUF then had duplicate tokens and llama.cpp refused it).
    func testDepthPrunedCheckpointKeepsPatternLogitsAndVocabulary() throws {
        let model = try GGUFModelLoader.load(path: try gemma3Path())  // a copy of its own to prune
        let tokens: [Int32] = [2, 651, 5279, 529, 9405, 563, 9079, 236764]
        let sliding = (0..<18).map(model.model.config.isSliding)
        try model.model.removeLayers([5, 12])
        XCTAssertEqual(
            (0..<16).map(model.model.config.isSliding), sliding.enumerated().filter { ![5, 12].contains($0.offset) }.map(\.element))
        let before = try model.model.forward(Graph(recording: false), tokens: tokens).value.array
        let dir = NSTemporaryDirectory() + "topiary-gemma-depth-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Checkpoint.save(model: model.model, tokenizerMetadata: model.metadata, to: dir)
        let reloaded = try ModelLoader.load(path: dir)
        XCTAssertEqual(reloaded.model.config, model.model.config)
        let after = try reloaded.model.forward(Graph(recording: false), tokens: tokens).value.array
        XCTAssertEqual(zip(before, after).map { abs($0 - $1) }.max() ?? 1, 0, accuracy: 1e-5)
        func vocabulary(_ m: [String: GGUFValue]) -> [[UInt8]] {
            (m["tokenizer.ggml.tokens"]?.array ?? []).map { Array(($0.string ?? "").utf8) }
        }
        let original = vocabulary(model.metadata), saved = vocabulary(reloaded.metadata)
        XCTAssertEqual(original.count, 262_144)
        XCTAssertEqual(original.filter { $0.starts(with: [0xEF, 0xBB, 0xBF]) }.count, 6)
        XCTAssertTrue(original == saved, "the vocabulary changed through the checkpoint")
    }

    func testBadGemmaFilesGiveClearErrors() throws {
        _ = try gemma3Path()
        let md: [String: GGUFValue] = [
            "tokenizer.ggml.model": .string("llama"),
            "tokenizer.ggml.tokens": .array([.string("a"), .string("b")]),
        ]
        XCTAssertThrowsError(try GGUFModelLoader.tokenizerFromMetadata(md, name: "bad.gguf")) {
            XCTAssertEqual($0.localizedDescription, "bad.gguf: missing metadata key 'tokenizer.ggml.scores'")
        }
    }
}
