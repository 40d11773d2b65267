import Foundation
import TopiaryCore
import TopiaryExport
import TopiaryGGUF
import TopiaryModels
import TopiaryTokenizers
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
        // A Hugging Face directory (tokenizer files, no Topiary manifest) that Topiary reads back.
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: dir))
        XCTAssertEqual(
            files, ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"])
        XCTAssertTrue(HFModelLoader.isHuggingFaceDirectory(dir))
        let ids: [Int32] = [1, 2, 3, 4, 5]
        XCTAssertEqual(try logits(try ModelLoader.load(path: dir).model, ids), try logits(model, ids))
    }

    /// transformers cannot describe layers that differ: the export is refused naming the formats that can carry the
    /// model, and with `allowTopiaryFormat` a Topiary checkpoint is written and the report says so.
    func testModelWithDifferingLayersIsRefusedUnlessTheTopiaryFormatIsAllowed() throws {
        let md = try GGUFFile(path: try smolLM2Path()).metadata
        let model = try tinyModel(heads: [4, 2], kvHeads: [2, 1], ffn: [64, 48])
        let dir = temporaryPath(self, "hf-nonuniform")
        XCTAssertThrowsError(try HFExporter.export(model: model, sourceMetadata: md, to: dir)) { error in
            let m = error.localizedDescription
            for part in ["layers differ", "transformers' LlamaConfig", "GGUF (--format gguf", "'deci'", "--allow-topiary-format"] {
                XCTAssertTrue(m.contains(part), "\(m) does not mention \(part)")
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir))
        let report = try HFExporter.export(model: model, sourceMetadata: md, to: dir, allowTopiaryFormat: true)
        XCTAssertEqual(report.format, "topiary")
        XCTAssertFalse(report.uniform)
        XCTAssertTrue(report.notes[0].contains("transformers cannot load"), report.notes[0])
        XCTAssertTrue(report.notes[0].contains("--format gguf"), report.notes[0])
        let config = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as? [String: Any])
        XCTAssertEqual(config["num_attention_heads"] as? [Int], [4, 2])
        XCTAssertEqual(try ModelLoader.load(path: dir).model.config, model.config)
        // A gemma3 or qwen2 model whose layers differ names GGUF with per-layer arrays, which only Topiary reads.
        let gemma = try ArchitectureRoundTripTests.tinyModel("gemma3")
        let kept = Array(0..<40)
        gemma.layers[0].gate.value = gemma.layers[0].gate.value.selecting(kept, axis: 0)
        gemma.layers[0].up.value = gemma.layers[0].up.value.selecting(kept, axis: 0)
        gemma.layers[0].down.value = gemma.layers[0].down.value.selecting(kept, axis: 1)
        try gemma.refreshConfig()
        XCTAssertFalse(gemma.config.isUniform)
        XCTAssertThrowsError(try HFExporter.export(model: gemma, sourceMetadata: md, to: dir + "-gemma")) { error in
            XCTAssertTrue(error.localizedDescription.contains("Gemma3TextConfig"), error.localizedDescription)
            XCTAssertTrue(error.localizedDescription.contains("which Topiary reads back"), error.localizedDescription)
        }
    }

    /// Each family's tiny model written as a Hugging Face directory (its own config.json class, Gemma's norms as
    /// `w` for `1 + w`) loads back with the same logits and tokenizer.
    func testEveryFamilyRoundTripsThroughAHuggingFaceDirectory() throws {
        let md = ArchitectureRoundTripTests.tokenizerMetadata
        let tokenizer = try GGUFModelLoader.tokenizerFromMetadata(md, name: "tiny")
        let ids: [Int32] = [1, 5, 9, 2, 30, 17, 4, 8]
        for family in ["llama", "qwen2", "gemma3"] {
            let model = try ArchitectureRoundTripTests.tinyModel(family)
            let dir = temporaryPath(self, "hf-" + family)
            let report = try HFExporter.export(model: model, sourceMetadata: md, to: dir)
            XCTAssertEqual(report.architecture, Architectures.family(modelType: family)?.hfClassName)
            let back = try ModelLoader.load(path: dir)
            XCTAssertEqual(back.model.config, model.config, family)
            let a = try logits(back.model, ids), b = try logits(model, ids)
            XCTAssertLessThanOrEqual(maxAbsDifference(a, b), 1e-5, family)
            XCTAssertEqual(back.tokenizer.encode("abc d"), tokenizer.encode("abc d"), family)
            XCTAssertEqual(back.tokenizer.eosTokenID, tokenizer.eosTokenID, family)
            if family == "gemma3" {
                let stored = try Safetensors.read(path: dir + "/model.safetensors").tensors["model.norm.weight"]!.array
                XCTAssertEqual(stored, model.norm.value.array.map { $0 - 1 })
            }
        }
    }

    /// The real models exported from their GGUF files load back as Hugging Face directories with the same logits and the
    /// same token ids (tokenizer.json built from the GGUF tokenizer: SmolLM2's byte-level BPE, Gemma 3's SentencePiece
    /// BPE with byte fallback).
    func testRealModelsExportAndLoadBackWithEqualLogitsAndTokens() throws {
        let text = String(try String(contentsOfFile: try dataPath("wikitext-2-raw/test.txt"), encoding: .utf8).prefix(100_000))
        var gguf = [try smolLM2Path()]
        let gemma =
            ProcessInfo.processInfo.environment["TOPIARY_GEMMA3_MODEL"] ?? repoRoot() + "/checkpoints/models/gemma-3-270m-q4_k_m.gguf"
        if FileManager.default.fileExists(atPath: gemma) { gguf.append(gemma) } else { print("skipping Gemma 3: \(gemma) not found") }
        for path in gguf {
            let source = try GGUFModelLoader.load(path: path)
            let dir = temporaryPath(self, "hf-real-" + (path as NSString).lastPathComponent)
            let report = try HFExporter.export(model: source.model, sourceMetadata: source.metadata, to: dir)
            XCTAssertEqual(report.format, "safetensors-hf")
            let back = try ModelLoader.load(path: dir)
            let ids = source.tokenizer.encode(text)
            XCTAssertTrue(back.tokenizer.encode(text) == ids, "\(path): the exported tokenizer.json encodes differently")
            XCTAssertEqual(back.tokenizer.bosTokenID, source.tokenizer.bosTokenID)
            XCTAssertEqual(back.tokenizer.eosTokenID, source.tokenizer.eosTokenID)
            XCTAssertEqual(
                back.tokenizer.encode("Hi", addSpecialTokens: true, parseSpecial: false),
                source.tokenizer.encode("Hi", addSpecialTokens: true, parseSpecial: false))
            let window = ids.prefix(48).map(Int32.init)
            XCTAssertEqual(maxAbsDifference(try logits(back.model, window), try logits(source.model, window)), 0, path)
        }
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
