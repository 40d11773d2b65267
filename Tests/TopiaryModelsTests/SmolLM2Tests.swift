import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGGUF
import TopiaryModels
import TopiaryTokenizers
import XCTest

/// One copy of the real model and the WikiText-2 tokens for every test of this file.
enum SmolLM2 {
    nonisolated(unsafe) private static var cached: (LoadedModel, [Int32])?
    static func load() throws -> (LoadedModel, [Int32]) {
        if let cached { return cached }
        let loaded = try GGUFModelLoader.load(path: try smolLM2Path())
        let text = try String(contentsOfFile: try dataPath("wikitext-2-raw/test.txt"), encoding: .utf8)
        let tokens = loaded.tokenizer.encode(text, addSpecialTokens: false, parseSpecial: false).map(Int32.init)
        cached = (loaded, tokens)
        return (loaded, tokens)
    }
}

final class SmolLM2TokenizerTests: XCTestCase {
    func testWikiTextTokenizesLikeTheOriginalTokenizer() throws {
        let (loaded, tokens) = try SmolLM2.load()
        let expected = try loadJSON("smollm2_strings.json")
        XCTAssertEqual(tokens.count, 304_978)
        XCTAssertEqual(
            Array(tokens.prefix(16)), [1116, 446, 6356, 389, 9226, 352, 446, 38028, 16506, 6356, 389, 9226, 352, 314, 354, 2321])
        XCTAssertEqual(tokens.count, expected["wikitext_count"] as? Int)
        var weighted: UInt64 = 0
        for (i, v) in tokens.enumerated() { weighted = (weighted &+ UInt64(i) &* UInt64(v)) % (1 << 61) }
        XCTAssertEqual(
            weighted, (expected["wikitext_ids_weighted_sum"] as! NSNumber).uint64Value, "ids differ from the reference somewhere")
        let text = try String(contentsOfFile: try dataPath("wikitext-2-raw/test.txt"), encoding: .utf8)
        XCTAssertEqual(loaded.tokenizer.decode(tokens.map(Int.init), skipSpecialTokens: false), text)
    }

    func testTrickyStringsMatchTheReference() throws {
        let (loaded, _) = try SmolLM2.load()
        let cases = try loadJSON("smollm2_strings.json")["cases"] as! [[String: Any]]
        XCTAssertGreaterThan(cases.count, 30)
        for c in cases {
            let text = c["text"] as! String
            XCTAssertEqual(loaded.tokenizer.encode(text, addSpecialTokens: false, parseSpecial: false), c["ids"] as! [Int], text)
            XCTAssertEqual(
                loaded.tokenizer.encode(text, addSpecialTokens: false, parseSpecial: true), c["ids_parse_special"] as! [Int], text)
            if !text.contains("\u{0}") {
                XCTAssertEqual(
                    loaded.tokenizer.decode(
                        loaded.tokenizer.encode(text, addSpecialTokens: false, parseSpecial: false),
                        skipSpecialTokens: false), text)
            }
        }
    }
}

extension SmolLM2TokenizerTests {
    /// A Hugging Face `tokenizer.json` in SmolLM2's layout (byte-level BPE, Digits(individual) + ByteLevel,
    /// added special tokens, list-form merges) written from the GGUF's vocabulary encodes exactly as the GGUF tokenizer.
    func testHuggingFaceTokenizerJSONEncodesLikeTheReference() throws {
        let (loaded, _) = try SmolLM2.load()
        let md = loaded.metadata
        let tokens = try XCTUnwrap(md["tokenizer.ggml.tokens"]?.stringArray)
        let merges = try XCTUnwrap(md["tokenizer.ggml.merges"]?.stringArray)
        let types = md["tokenizer.ggml.token_type"]?.intArray ?? []
        var vocab: [String: Int] = [:]
        var added: [[String: Any]] = []
        for (i, t) in tokens.enumerated() {
            if i < types.count && types[i] == 3 { added.append(["id": i, "content": t, "special": true]) } else { vocab[t] = i }
        }
        let json: [String: Any] = [
            "version": "1.0", "added_tokens": added,
            "pre_tokenizer": [
                "type": "Sequence",
                "pretokenizers": [
                    ["type": "Digits", "individual_digits": true],
                    ["type": "ByteLevel", "add_prefix_space": false, "use_regex": true],
                ],
            ],
            "model": ["type": "BPE", "vocab": vocab, "merges": merges.map { $0.split(separator: " ", maxSplits: 1).map(String.init) }],
        ]
        let config: [String: Any] = ["bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "add_bos_token": false]
        let tok = try BPETokenizer(
            huggingFaceJSON: try JSONSerialization.data(withJSONObject: json),
            config: try JSONSerialization.data(withJSONObject: config), source: "tokenizer.json")
        XCTAssertEqual(tok.vocabularySize, tokens.count)
        XCTAssertEqual(tok.eosTokenID, loaded.tokenizer.eosTokenID)
        for c in try loadJSON("smollm2_strings.json")["cases"] as! [[String: Any]] {
            let text = c["text"] as! String
            XCTAssertEqual(tok.encode(text, addSpecialTokens: false, parseSpecial: false), c["ids"] as! [Int], text)
            XCTAssertEqual(tok.encode(text, addSpecialTokens: false, parseSpecial: true), c["ids_parse_special"] as! [Int], text)
        }
        // Unsupported layouts are refused by name.
        var metaspace = json
        metaspace["pre_tokenizer"] = ["type": "Metaspace"]
        XCTAssertThrowsError(try BPETokenizer(huggingFaceJSON: try JSONSerialization.data(withJSONObject: metaspace), source: "x.json")) {
            XCTAssertTrue("\($0.localizedDescription)".contains("x.json: unknown pre-tokenizer 'Metaspace'"), "\($0)")
        }
        XCTAssertThrowsError(try BPETokenizer(huggingFaceJSON: Data("[1]".utf8), source: "y.json")) {
            XCTAssertTrue("\($0.localizedDescription)".contains("y.json: invalid tokenizer.json"), "\($0)")
        }
    }

    /// "é" and "e" + U+0301 are equal Swift Strings but different bytes: the word cache must not mix them up.
    func testCanonicallyEquivalentPiecesAreNotConfused() throws {
        let (loaded, _) = try SmolLM2.load()
        let tok = try XCTUnwrap(loaded.tokenizer as? BPETokenizer)
        let fresh = try GGUFModelLoader.tokenizerFromMetadata(loaded.metadata, name: "fresh")
        let composed = "caf\u{E9}", decomposed = "cafe\u{301}"
        let expectedDecomposed = fresh.encode(decomposed, addSpecialTokens: false, parseSpecial: false)
        XCTAssertNotEqual(fresh.encode(composed, addSpecialTokens: false, parseSpecial: false), expectedDecomposed)
        _ = tok.encode(composed, addSpecialTokens: false, parseSpecial: false)  // fills the cache with the composed form
        XCTAssertEqual(tok.encode(decomposed, addSpecialTokens: false, parseSpecial: false), expectedDecomposed)
        XCTAssertEqual(tok.decode(expectedDecomposed, skipSpecialTokens: false).unicodeScalars.count, decomposed.unicodeScalars.count)
    }
}

final class SmolLM2ModelTests: XCTestCase {
    func testParameterCountsAndWeightLayout() throws {
        let (loaded, _) = try SmolLM2.load()
        XCTAssertEqual(loaded.model.parameterCount, 134_515_008)
        XCTAssertEqual(loaded.model.parameterCount - 49_152 * 576, 106_203_456)
        // q/k rows are in Hugging Face order (the loader undid llama.cpp's RoPE permutation).
        let g = try loadJSON("smollm2_generation.json")
        let q = try XCTUnwrap(loaded.model.parameter(named: "model.layers.0.self_attn.q_proj.weight")).value
        XCTAssertEqual(Array(q.array[576..<580]), (g["q_proj_layer0_row1_head"] as! [NSNumber]).map(\.floatValue))
        let k = try XCTUnwrap(loaded.model.parameter(named: "model.layers.0.self_attn.k_proj.weight")).value
        XCTAssertEqual(Array(k.array[(33 * 576)..<(33 * 576 + 4)]), (g["k_proj_layer0_row33_head"] as! [NSNumber]).map(\.floatValue))
        let w = Tensor(shape: [8, 3], values: (0..<24).map(Float.init))
        XCTAssertEqual(GGUFModelLoader.permuteRotary(GGUFModelLoader.unpermuteRotary(w, heads: 2), heads: 2).array, w.array)
        XCTAssertNotEqual(GGUFModelLoader.unpermuteRotary(w, heads: 2).array, w.array)
    }

    func testPerplexityMatchesPyTorch() throws {
        let (loaded, tokens) = try SmolLM2.load()
        let r512 = try PerplexityEvaluator(window: 512, maxWindows: 64).evaluate(loaded.model, tokens: tokens)
        XCTAssertEqual(r512.predictions, 32_704)
        XCTAssertEqual(r512.ppl, 29.9347, accuracy: 0.05)
        let r128 = try PerplexityEvaluator(window: 128, maxWindows: 256).evaluate(loaded.model, tokens: tokens)
        XCTAssertEqual(r128.ppl, 56.3477, accuracy: 0.1)
    }

    func testGreedyGenerationMatchesTransformers() throws {
        let (loaded, _) = try SmolLM2.load()
        let g = try loadJSON("smollm2_generation.json")
        let prompt = loaded.tokenizer.encode("University is", addSpecialTokens: true, parseSpecial: true)
        XCTAssertEqual(prompt, g["prompt_ids"] as! [Int])
        let ids = try Generator(model: loaded.model, endOfSequence: loaded.tokenizer.eosTokenID)
            .generate(prompt: prompt.map(Int32.init), options: GenerationOptions(maxTokens: 32))
        XCTAssertEqual(ids.map(Int.init), g["generated_ids"] as! [Int])
        XCTAssertEqual(Array(ids.prefix(8)), [253, 1603, 29, 10291, 3904, 5636, 288, 5188])
        // The cached decode agrees with a full forward over the same sequence.
        let full = try loaded.model.forward(Graph(), tokens: prompt.map(Int32.init) + Array(ids.prefix(5)), batch: 1).value
        var best: Int32 = 0, bestValue = -Float.infinity
        let vocab = loaded.model.config.vocabSize, row = prompt.count + 4
        for j in 0..<vocab where full[row * vocab + j] > bestValue { bestValue = full[row * vocab + j]; best = Int32(j) }
        XCTAssertEqual(best, ids[5])
    }

    func testLossAndEveryGradientNormMatchPyTorch() throws {
        let (loaded, tokens) = try SmolLM2.load()
        let reference = try loadJSON("smollm2_gradients.json")
        let ids = Array(tokens[32768..<34048])
        XCTAssertEqual(Array(ids.prefix(8)).map(Int.init), reference["batch_first_ids"] as! [Int])
        var targets = [Int32](repeating: -100, count: ids.count)
        for b in 0..<10 { for t in 0..<127 { targets[b * 128 + t] = ids[b * 128 + t + 1] } }
        let model = loaded.model
        defer { for p in model.parameters { p.zeroGrad() } }
        let g = Graph(recording: true)
        let loss = try g.crossEntropy(model.forward(g, tokens: ids, batch: 10), targets: targets)
        try g.backward(loss)
        XCTAssertEqual(Double(loss.value[0]), 4.209180, accuracy: 0.0005)
        let tensors = reference["tensors"] as! [String: [String: Any]]
        XCTAssertEqual(tensors.count, 272)
        XCTAssertEqual(model.parameters.count, 272)
        var worst = 0.0, worstName = ""
        for p in model.parameters {
            let expected = try XCTUnwrap(tensors[p.name], p.name)["grad_norm"] as! Double
            let grad = try XCTUnwrap(p.grad, p.name)
            let norm = sqrt(grad.array.reduce(0.0) { $0 + Double($1) * Double($1) })
            let rel = abs(norm - expected) / expected
            if rel > worst { worst = rel; worstName = p.name }
        }
        XCTAssertLessThan(worst, 1e-3, "worst gradient norm: \(worstName)")
    }

    func testBadInputsGiveClearErrors() throws {
        XCTAssertThrowsError(try ModelLoader.load(path: "/nonexistent/model.gguf")) {
            XCTAssertEqual($0.localizedDescription, "/nonexistent/model.gguf: no such file or directory")
        }
        let (loaded, tokens) = try SmolLM2.load()
        XCTAssertThrowsError(try PerplexityEvaluator(window: 1).evaluate(loaded.model, tokens: tokens)) {
            XCTAssertEqual($0 as? EvaluationError, .windowTooSmall(1))
        }
        XCTAssertThrowsError(try PerplexityEvaluator().evaluate(loaded.model, tokens: [], source: "empty.txt")) {
            XCTAssertEqual($0 as? EvaluationError, .emptyText(path: "empty.txt"))
        }
        XCTAssertThrowsError(try PerplexityEvaluator(window: 512).evaluate(loaded.model, tokens: [1, 2, 3], source: "short.txt")) {
            XCTAssertEqual($0.localizedDescription, "short.txt: 3 tokens are fewer than one window of 512")
        }
    }
}
