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
        var json = HFConfigWriter.common(c, className: hfClassName, modelType: "llama", tokenizer: md)
        json["hidden_act"] = "silu"
        json["attention_bias"] = c.attentionBias
        json["mlp_bias"] = false
        json["pretraining_tp"] = 1
        return try HFConfigWriter.data(json)
    }

    public func config(hf: HFConfig) throws -> ModelConfig {
        try hf.requireActivation("hidden_act", "silu")
        return try hf.validated(try hf.decoder(modelType: modelType, tiedByDefault: false, defaultEps: 1e-6))
    }

    public var perLayerFormats: String {
        "GGUF (--format gguf, written as llama.cpp's 'deci' architecture, which llama.cpp runs) or a Topiary checkpoint"
    }

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
