import Foundation
import TopiaryGGUF

/// Qwen2 (Qwen2.5, DeepSeek-R1-Distill-Qwen): the LLaMA layer with biases on q, k and v, rotate-half RoPE stored as
/// is (llama.cpp's converter permutes q/k rows for `llama` only), an untied output. A model whose layers differ is
/// written as `qwen2` with per-layer arrays, which Topiary reads back (llama.cpp's `qwen2` sizes layers from layer 0).
public struct Qwen2Family: ArchitectureFamily {
    public init() {}
    public var modelType: String { "qwen2" }
    public var ggufArchitectures: [String] { ["qwen2"] }
    public var hfClassName: String { "Qwen2ForCausalLM" }
    /// Qwen2's `config.json` has no `attention_bias` key: its q/k/v projections always have biases.
    public var defaultAttentionBias: Bool { true }

    public func config(gguf file: GGUFFile, architecture: String, name: String) throws -> ModelConfig {
        var config = try GGUFDecoderKeys.config(file, name: name, prefix: "qwen2", modelType: modelType)
        config.rmsNormEps = file.metadata["qwen2.attention.layer_norm_rms_epsilon"]?.float ?? 1e-6
        try config.validate()
        return config
    }

    public func hfExportLimitation(_ config: ModelConfig) -> String? {
        config.isUniform
            ? nil
            : "layers differ (\(config.shapeSummary)): transformers' Qwen2Config has a single head count and FFN width for all layers"
    }

    /// `config.json` for `Qwen2ForCausalLM` (uniform layers only; q/k/v biases, no sliding window).
    public func hfConfig(_ c: ModelConfig, tokenizer md: [String: GGUFValue]) throws -> Data? {
        guard c.isUniform else { return nil }
        var json = HFConfigWriter.common(c, className: hfClassName, modelType: "qwen2", tokenizer: md)
        json["hidden_act"] = "silu"
        json["use_sliding_window"] = false
        json["sliding_window"] = NSNull()
        json["max_window_layers"] = c.layerCount
        return try HFConfigWriter.data(json)
    }

    public func config(hf: HFConfig) throws -> ModelConfig {
        try hf.requireActivation("hidden_act", "silu")
        if try hf.bool("use_sliding_window") == true {
            throw ModelError.invalidConfig("\(hf.path): 'use_sliding_window' is true: Topiary runs Qwen2 with full attention")
        }
        var config = try hf.decoder(modelType: modelType, tiedByDefault: false, defaultEps: 1e-6)
        config.attentionBias = true
        return try hf.validated(config)
    }
}
