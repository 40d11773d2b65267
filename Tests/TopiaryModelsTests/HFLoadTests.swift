import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryModels
import XCTest

/// The folder `scripts/reference/make_hf_fixtures.py` fills (Hugging Face directories of SmolLM2-135M-Instruct and
/// Gemma 3 270M, f32, bf16 and sharded, read by transformers from the same GGUF files, and its references), from
/// $TOPIARY_HF_FIXTURES; the tests skip without it.
func hfFixtures() throws -> String {
    guard let dir = ProcessInfo.processInfo.environment["TOPIARY_HF_FIXTURES"], !dir.isEmpty else {
        throw XCTSkip("TOPIARY_HF_FIXTURES is not set (make the directories with scripts/reference/make_hf_fixtures.py)")
    }
    guard FileManager.default.fileExists(atPath: dir + "/smollm2-reference.json") else {
        throw XCTSkip("\(dir) has no smollm2-reference.json (run scripts/reference/make_hf_fixtures.py \(dir))")
    }
    return dir
}

/// A Hugging Face directory loads as the GGUF it was made from: the same token ids on all of WikiText-2's test text,
/// the same logits and perplexity (f32), bf16 within rounding, shards as the single file; and the numbers agree with
/// transformers' and the `tokenizers` library's own.
final class HFLoadTests: XCTestCase {
    struct Case {
        let name: String
        let gguf: () throws -> String
    }
    let cases = [Case(name: "smollm2", gguf: smolLM2Path), Case(name: "gemma3", gguf: gemma3Path)]

    func reference(_ dir: String, _ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name)-reference.json"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func logits(_ model: any LanguageModel, _ ids: [Int32]) throws -> [Float] {
        try model.forward(Graph(recording: false), tokens: ids, batch: 1, cache: nil, logits: .all).value.array
    }

    func testTokenIdsEqualTheGGUFPathAndTheTokenizersLibrary() throws {
        let dir = try hfFixtures()
        let text = try String(contentsOfFile: try dataPath("wikitext-2-raw/test.txt"), encoding: .utf8)
        for c in cases {
            let ref = try reference(dir, c.name)
            let gguf = try GGUFModelLoader.load(path: try c.gguf(), streamLayers: 1).tokenizer.encode(text)
            let hf = try ModelLoader.load(path: "\(dir)/\(c.name)-f32").tokenizer.encode(text)
            XCTAssertEqual(hf.count, gguf.count, c.name)
            XCTAssertTrue(
                hf == gguf,
                "\(c.name): first difference at \(zip(hf, gguf).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? -1)")
            XCTAssertEqual(hf.count, ref["count"] as? Int, c.name)
            XCTAssertEqual(Array(hf.prefix(2048)), ref["ids_head"] as? [Int], c.name)
            XCTAssertEqual(Array(hf.suffix(512)), ref["ids_tail"] as? [Int], c.name)
            print("\(c.name): \(hf.count) WikiText-2 test tokens, identical to the GGUF path and to the tokenizers library")
        }
    }

    /// f32: logits within 1e-4 of the logit scale of the GGUF path's (the same dequantized weights) and of transformers'
    /// (float64); perplexity on two windows of 512 equal to 4 digits; bf16 within 0.2%; the sharded copy loads the same
    /// weights.
    func testLogitsAndPerplexityMatchTheGGUFPathAndTransformers() throws {
        let dir = try hfFixtures()
        for c in cases {
            let ref = try reference(dir, c.name)
            let gguf = try GGUFModelLoader.load(path: try c.gguf())
            let text = try String(contentsOfFile: try dataPath("wikitext-2-raw/test.txt"), encoding: .utf8)
            let tokens = gguf.tokenizer.encode(text).map(Int32.init)
            let evaluator = PerplexityEvaluator(window: 512, maxWindows: 2)
            let ids = try XCTUnwrap(ref["logits_ids"] as? [Int]).map(Int32.init)
            let expected = try logits(gguf.model, ids)
            let pplGGUF = try evaluator.evaluate(gguf.model, tokens: tokens).ppl

            let f32 = try ModelLoader.load(path: "\(dir)/\(c.name)-f32")
            let got = try logits(f32.model, ids)
            let scale = expected.map(abs).max() ?? 1
            let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1e-4 * scale, "\(c.name): |Δlogit| \(worst) of \(scale)")
            // transformers (float64) on the same ids: 32 columns and the log-sum-exp of every position.
            let vocab = f32.model.config.vocabSize
            let columns = try XCTUnwrap(ref["columns"] as? [Int]), table = try XCTUnwrap(ref["logits"] as? [[Double]])
            let lse = try XCTUnwrap(ref["logsumexp"] as? [Double])
            var worstHF = 0.0
            for t in ids.indices {
                let row = got[(t * vocab)..<((t + 1) * vocab)].map(Double.init)
                for (j, col) in columns.enumerated() { worstHF = max(worstHF, abs(row[col] - table[t][j])) }
                let m = row.max()!
                worstHF = max(worstHF, abs(m + log(row.reduce(0) { $0 + exp($1 - m) }) - lse[t]))
            }
            let hfScale = try XCTUnwrap(ref["max_abs_logit"] as? Double)
            XCTAssertLessThanOrEqual(worstHF, 1e-4 * hfScale, "\(c.name): |Δlogit| vs transformers \(worstHF) of \(hfScale)")

            let pplF32 = try evaluator.evaluate(f32.model, tokens: tokens).ppl
            XCTAssertEqual(String(format: "%.4g", pplF32), String(format: "%.4g", pplGGUF), c.name)
            let pplTransformers = try XCTUnwrap(ref["ppl_f32"] as? Double)
            XCTAssertEqual(pplF32, pplTransformers, accuracy: 1e-3 * pplTransformers, c.name)

            let sharded = try ModelLoader.load(path: "\(dir)/\(c.name)-f32-sharded")
            XCTAssertGreaterThan(try HFWeights(directory: "\(dir)/\(c.name)-f32-sharded").files.count, 1)
            for (a, b) in zip(f32.model.parameters, sharded.model.parameters) {
                XCTAssertEqual(a.name, b.name)
                XCTAssertTrue(a.value.array == b.value.array, "\(c.name): \(a.name) differs between the shards and the single file")
            }

            let bf16 = try ModelLoader.load(path: "\(dir)/\(c.name)-bf16")
            XCTAssertEqual(bf16.sourceTensorTypes["model.embed_tokens.weight"], "BF16")
            let pplBF16 = try evaluator.evaluate(bf16.model, tokens: tokens).ppl
            XCTAssertEqual(pplBF16, pplGGUF, accuracy: 2e-3 * pplGGUF, c.name)
            print(
                String(
                    format: "%@: max |Δlogit| %.2e (GGUF path), %.2e (transformers fp64), scale %.1f; ppl GGUF %.5f, HF f32 %.5f, "
                        + "transformers f32 %.5f, HF bf16 %.5f (%+.3f%%)",
                    c.name, worst, worstHF, scale, pplGGUF, pplF32, pplTransformers, pplBF16, 100 * (pplBF16 / pplGGUF - 1)))
        }
    }
}
