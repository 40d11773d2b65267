import Foundation
import TopiaryCore
import TopiaryGGUF
import TopiaryModels

/// Writes a model as Hugging Face transformers loads it with `LlamaForCausalLM.from_pretrained`:
/// `model.safetensors` (fp32, HF tensor names, `q_proj`/`k_proj` in HF's rotate-half layout) and a
/// complete `config.json`. Transformers' `LlamaConfig` has one head count and one FFN width for all
/// layers, so a model whose layers differ cannot be described; it is then written as a Topiary
/// checkpoint (per-layer arrays in `config.json`) and the report says so.
///
/// The directory is also a Topiary checkpoint (`tokenizer_metadata.json`, `manifest.json`), so
/// `--model DIR` reads it back.
public enum HFExporter {
    @discardableResult
    public static func export(model input: any LanguageModel, sourceMetadata: [String: GGUFValue], to directory: String) throws -> ExportReport {
        let (model, merged) = try ExportWeights.plain(input)
        let config = model.config
        guard config.architecture == "llama" else {
            throw ExportError.unsupportedModel("safetensors-hf export supports LLaMA-family models (this one is '\(config.architecture)')")
        }
        var notes: [String] = []
        if merged > 0 { notes.append("merged \(merged) LoRA adapters into the weights") }
        let tensors = model.parameters.map { ExportedTensor(name: $0.name, dimensions: $0.shape, type: "F32", note: nil) }
        if !config.isUniform {
            notes.insert("layers differ (\(config.shapeSummary)): transformers' LlamaConfig has a single head count and FFN width for "
                + "all layers, so \(directory) is a Topiary checkpoint (config.json with per-layer arrays) that transformers cannot load; "
                + "use --format gguf to run it in llama.cpp", at: 0)
            try Checkpoint.save(model: model, tokenizerMetadata: sourceMetadata, to: directory)
            return ExportReport(format: "topiary", path: directory, architecture: "llama (Topiary per-layer config)", type: "F32",
                                uniform: false, bytes: directorySize(directory), tensors: tensors, fallbacks: [], notes: notes,
                                mergedAdapters: merged)
        }
        try Checkpoint.save(model: model, tokenizerMetadata: sourceMetadata, to: directory,
                            configJSON: try hfConfig(config, tokenizer: sourceMetadata))
        notes.append("no tokenizer files for transformers: load the tokenizer of the source model (the vocabulary is unchanged)")
        return ExportReport(format: "safetensors-hf", path: directory, architecture: "LlamaForCausalLM", type: "F32", uniform: true,
                            bytes: directorySize(directory), tensors: tensors, fallbacks: [], notes: notes, mergedAdapters: merged)
    }

    /// `config.json` for `LlamaForCausalLM` (uniform layers only).
    static func hfConfig(_ c: ModelConfig, tokenizer md: [String: GGUFValue]) throws -> Data {
        var json: [String: Any] = [
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": c.vocabSize,
            "hidden_size": c.hiddenSize,
            "intermediate_size": c.intermediateSizes[0],
            "num_hidden_layers": c.layerCount,
            "num_attention_heads": c.heads[0],
            "num_key_value_heads": c.kvHeads[0],
            "head_dim": c.headDim,
            "hidden_act": "silu",
            "max_position_embeddings": c.contextLength,
            // Through the shortest decimal form, so that 1e-5 is written 1e-05 and not 9.999999747378752e-06.
            "rms_norm_eps": Double("\(c.rmsNormEps)") ?? Double(c.rmsNormEps),
            "rope_theta": Double("\(c.ropeTheta)") ?? Double(c.ropeTheta),
            "rope_scaling": NSNull(),
            "attention_bias": false,
            "attention_dropout": 0.0,
            "mlp_bias": false,
            "pretraining_tp": 1,
            "initializer_range": 0.02,
            "tie_word_embeddings": c.tieWordEmbeddings,
            "torch_dtype": "float32",
            "use_cache": true,
        ]
        if let bos = md["tokenizer.ggml.bos_token_id"]?.int { json["bos_token_id"] = bos }
        if let eos = md["tokenizer.ggml.eos_token_id"]?.int { json["eos_token_id"] = eos }
        if let pad = md["tokenizer.ggml.padding_token_id"]?.int { json["pad_token_id"] = pad }
        return try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }

    static func directorySize(_ dir: String) -> Int {
        let fm = FileManager.default
        return ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).reduce(0) {
            $0 + ((try? fm.attributesOfItem(atPath: dir + "/" + $1)[.size] as? Int) ?? 0)
        }
    }
}
