import Foundation
import TopiaryCore
import TopiaryExport
import TopiaryGGUF
import TopiaryModels
import XCTest

final class HFExportTests: XCTestCase {
    func testUniformModelWritesALlamaForCausalLMDirectory() throws {
        let md = try GGUFFile(path: try smolLM2Path()).metadata
        let model = try tinyModel(heads: [4, 4], kvHeads: [2, 2], ffn: [64, 64], tied: false)
        let dir = temporaryPath(self, "hf")
        let report = try HFExporter.export(model: model, sourceMetadata: md, to: dir)
        XCTAssertEqual(report.format, "safetensors-hf")
        XCTAssertEqual(report.architecture, "LlamaForCausalLM")
        let config = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as? [String: Any])
        XCTAssertEqual(config["architectures"] as? [String], ["LlamaForCausalLM"])
        XCTAssertEqual(config["model_type"] as? String, "llama")
        XCTAssertEqual(config["num_attention_heads"] as? Int, 4)
        XCTAssertEqual(config["num_key_value_heads"] as? Int, 2)
        XCTAssertEqual(config["intermediate_size"] as? Int, 64)
        XCTAssertEqual(config["head_dim"] as? Int, 16)
        XCTAssertEqual(config["hidden_act"] as? String, "silu")
        XCTAssertEqual(config["tie_word_embeddings"] as? Bool, false)
        XCTAssertEqual(config["bos_token_id"] as? Int, 1)
        let weights = try Safetensors.read(path: dir + "/model.safetensors").tensors
        XCTAssertEqual(Set(weights.keys), Set(model.parameters.map(\.name)))
        XCTAssertNotNil(weights["model.layers.1.self_attn.q_proj.weight"])
        XCTAssertNotNil(weights["lm_head.weight"])
        // q_proj stays in Hugging Face's layout (no llama.cpp permutation).
        XCTAssertEqual(weights["model.layers.0.self_attn.q_proj.weight"]?.array, model.layers[0].q.value.array)
        // The directory is also a Topiary checkpoint.
        let ids: [Int32] = [1, 2, 3, 4, 5]
        XCTAssertEqual(try logits(try ModelLoader.load(path: dir).model, ids), try logits(model, ids))
    }

    func testModelWithDifferingLayersIsWrittenAsATopiaryCheckpointAndSaysSo() throws {
        let md = try GGUFFile(path: try smolLM2Path()).metadata
        let model = try tinyModel(heads: [4, 2], kvHeads: [2, 1], ffn: [64, 48])
        let dir = temporaryPath(self, "hf-nonuniform")
        let report = try HFExporter.export(model: model, sourceMetadata: md, to: dir)
        XCTAssertEqual(report.format, "topiary")
        XCTAssertFalse(report.uniform)
        XCTAssertTrue(report.notes[0].contains("transformers cannot load"), report.notes[0])
        XCTAssertTrue(report.notes[0].contains("--format gguf"), report.notes[0])
        let config = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as? [String: Any])
        XCTAssertEqual(config["num_attention_heads"] as? [Int], [4, 2])
        XCTAssertEqual(try ModelLoader.load(path: dir).model.config, model.config)
    }

    /// transformers loads the safetensors-hf export of a uniformly pruned SmolLM2 (l2, 20% in every layer) and its
    /// logits match Topiary's within 1e-4 of the logit scale (fixture: scripts/reference/make_hf_export_fixture.py,
    /// transformers in float64). An absolute 1e-4 is below fp32 noise here: transformers' own fp32 logits differ
    /// from its fp64 ones by 2.8e-3 on these positions (largest |logit| ≈ 33).
    func testTransformersLogitsOfAUniformlyPrunedExportMatchTopiary() throws {
        let fixture = try XCTUnwrap(
            JSONSerialization.jsonObject(
                with: Data(
                    contentsOf: Bundle.module.url(
                        forResource: "Fixtures/hf_export_uniform20.json", withExtension: nil)!)) as? [String: Any])
        let (loaded, tokens) = try SmolLM2.load()
        let model = try SmolLM2.pruned(loaded.model, layers: 0...29)
        let c = model.config
        XCTAssertTrue(c.isUniform)
        let hf = try XCTUnwrap(fixture["config"] as? [String: Int])
        XCTAssertEqual(fixture["transformers_class"] as? String, "LlamaForCausalLM")
        XCTAssertEqual(hf["num_attention_heads"], c.heads[0])
        XCTAssertEqual(hf["num_key_value_heads"], c.kvHeads[0])
        XCTAssertEqual(hf["intermediate_size"], c.intermediateSizes[0])
        let ids = try XCTUnwrap(fixture["ids"] as? [Int]).map(Int32.init)
        XCTAssertEqual(ids, Array(tokens.prefix(ids.count)))
        let vocab = c.vocabSize
        let out = try logits(model, ids)
        let columns = try XCTUnwrap(fixture["columns"] as? [Int])
        let expected = try XCTUnwrap(fixture["logits"] as? [[Double]])
        let lse = try XCTUnwrap(fixture["logsumexp"] as? [Double]), argmax = try XCTUnwrap(fixture["argmax"] as? [Int])
        var worst = 0.0
        for t in ids.indices {
            let row = Array(out[(t * vocab)..<((t + 1) * vocab)]).map(Double.init)
            for (j, col) in columns.enumerated() { worst = max(worst, abs(row[col] - expected[t][j])) }
            let m = row.max()!
            worst = max(worst, abs(m + log(row.reduce(0) { $0 + exp($1 - m) }) - lse[t]))
            XCTAssertEqual(row.firstIndex(of: m), argmax[t], "position \(t)")
        }
        let scale = try XCTUnwrap(fixture["max_abs_logit"] as? Double)
        print(String(format: "Topiary vs transformers (float64): worst |Δlogit| %.2e, largest |logit| %.2f", worst, scale))
        XCTAssertGreaterThan(scale, 10)
        XCTAssertLessThanOrEqual(worst, 1e-4 * scale, "worst |Δlogit| \(worst), largest |logit| \(scale)")
    }
}
