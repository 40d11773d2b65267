import Foundation
import TopiaryGGUF

/// LLaMA (SmolLM2, LLaMA 2/3, Mistral-style GQA): pre-norm RMSNorm, rotary attention with grouped KV heads, SwiGLU.
///
/// Besides `llama`, it reads llama.cpp's `deci` architecture (DeciLM / Nemotron-NAS): the same layer with per-layer
/// head counts and FFN widths that llama.cpp honours, and layers whose attention (`head_count` 0) or FFN
/// (`feed_forward_length` 0) was removed stored without those tensors. Topiary writes per-layer-shaped models that way:
/// llama.cpp's `llama` reads per-layer arrays but builds every layer with layer 0's sizes.
public struct LlamaFamily: ArchitectureFamily {
    public init() {}
    public var modelType: String { "llama" }
    public var ggufArchitectures: [String] { ["llama", "deci"] }
    public var hfClassName: String { "LlamaForCausalLM" }
    public var ggufPermutesRotary: Bool { true }

    public func config(gguf file: GGUFFile, architecture: String, name: String) throws -> ModelConfig {
        try GGUFDecoderKeys.config(file, name: name, prefix: architecture, modelType: modelType)
    }

    public func ggufArchitecture(for config: ModelConfig, requested: String?) throws -> String {
        let uniform = config.isUniform
        switch requested ?? "auto" {
        case "auto" where uniform, "llama" where uniform:
            return "llama"
        case "llama":
            throw ArchitectureLimitation(
                "layers differ (\(config.shapeSummary)) and llama.cpp's 'llama' architecture sizes every layer from layer 0 "
                    + "(it reads per-layer arrays but creates each layer's tensors with layer 0's head count and FFN width), "
                    + "so llama.cpp would refuse the file; export with --arch deci (the default for such models), which llama.cpp sizes "
                    + "per layer"
            )
        case "auto", "deci":
            guard config.heads[0] > 0 else {
                throw ArchitectureLimitation(
                    "layer 0 has no attention heads: llama.cpp derives the head size and rotary dimensions from layer 0's head count, "
                        + "so it cannot load this shape")
            }
            if let l = config.heads.indices.first(where: { config.heads[$0] > 0 && config.intermediateSizes[$0] == 0 }) {
                throw ArchitectureLimitation(
                    "layer \(l) keeps \(config.heads[l]) attention heads but no FFN channels: llama.cpp's deci graph skips the rest of a "
                        + "layer whose feed_forward_length is 0, attention output included, so it would compute a different model")
            }
            return "deci"
        case let other:
            throw ArchitectureLimitation("a llama model is written as GGUF architecture 'llama' or 'deci', not '\(other)'")
        }
    }

    /// `config.json` for `LlamaForCausalLM` (uniform layers only).
    public func hfConfig(_ c: ModelConfig, tokenizer md: [String: GGUFValue]) throws -> Data? {
        guard c.isUniform else { return nil }
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

    public var writesHFConfig: Bool { true }

    public func ggufNotes(_ config: ModelConfig, architecture arch: String) -> [String] {
        if arch == "deci" {
            return [
                "layers differ (\(config.shapeSummary)): written as llama.cpp's 'deci' architecture, which sizes each layer from "
                    + "per-layer arrays"
            ]
        }
        return config.isUniform
            ? [] : ["layers differ (\(config.shapeSummary)): written as '\(arch)' with per-layer arrays, which Topiary reads back"]
    }

    public func hfExportLimitation(_ config: ModelConfig) -> String? {
        config.isUniform
            ? nil
            : "layers differ (\(config.shapeSummary)): transformers' LlamaConfig has a single head count and FFN width for all layers"
    }
}
