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
        "Hugging Face export writes LLaMA models so far; a qwen2 model is exported as GGUF (--format gguf), which llama.cpp runs"
    }
}
