import Foundation
import TopiaryGGUF

/// Gemma 3: the LLaMA keys under `gemma3.` plus what the format leaves implicit. llama.cpp (`llama-model.cpp`,
/// `LLM_ARCH_GEMMA3`) and transformers' `Gemma3TextConfig` fix these the same way, and so does Topiary:
/// - every 6th layer (5, 11, 17, …) is global, the others local with `gemma3.attention.sliding_window` keys
///   (`gemma3.attention.sliding_window_pattern` is honoured when present: a period, or one flag per layer);
/// - local layers use RoPE base 10 000, global ones `gemma3.rope.freq_base`;
/// - the attention scale is `key_length^-½` (`query_pre_attn_scalar` = head dim; only Gemma 3 27B differs);
/// - embeddings are multiplied by √`embedding_length`; the MLP is GeGLU with tanh-approximated GELU;
/// - the norm weights in the file already include Gemma's `1 +` (llama.cpp's converter adds it), so they
///   are used as plain multipliers, as for LLaMA.
public struct Gemma3Family: ArchitectureFamily {
    public init() {}
    public var modelType: String { "gemma3" }
    public var ggufArchitectures: [String] { ["gemma3"] }
    public var hfClassName: String { "Gemma3ForCausalLM" }
    /// The default period of global layers.
    static let globalPeriod = 6

    public func config(gguf file: GGUFFile, architecture: String, name: String) throws -> ModelConfig {
        let md = file.metadata, a = "gemma3"
        var config = try GGUFDecoderKeys.config(file, name: name, prefix: a, modelType: modelType)
        guard md["\(a).attention.key_length"]?.int != nil else {
            throw ModelError.missingMetadata(path: name, key: "\(a).attention.key_length")
        }
        if let kind = md["\(a).rope.scaling.type"]?.string, kind != "none",
            let factor = md["\(a).rope.scaling.factor"]?.float, factor != 1
        {
            throw ModelError.invalidConfig("\(name): RoPE scaling '\(kind)' ×\(factor) is not supported (Gemma 3 270M and 1B have none)")
        }
        guard let window = md["\(a).attention.sliding_window"]?.int else {
            throw ModelError.missingMetadata(path: name, key: "\(a).attention.sliding_window")
        }
        let n = config.layerCount
        var sliding = Self.defaultSliding(layers: n)
        if let period = md["\(a).attention.sliding_window_pattern"]?.int, period > 0 {
            sliding = (0..<n).map { ($0 + 1) % period != 0 }
        } else if let flags = md["\(a).attention.sliding_window_pattern"]?.intArray {
            guard flags.count == n else {
                throw ModelError.invalidConfig(
                    "\(name): '\(a).attention.sliding_window_pattern' has \(flags.count) entries for \(n) layers")
            }
            sliding = flags.map { $0 != 0 }
        }
        config.activation = "gelu_pytorch_tanh"
        config.embeddingScale = Float(config.hiddenSize).squareRoot()
        config.queryKeyNorm = true
        config.postBlockNorms = true
        config.queryPreAttentionScalar = Float(config.headDim)
        config.slidingWindow = window
        config.slidingLayers = sliding
        config.localRopeTheta = 10_000
        config.rmsNormEps = md["\(a).attention.layer_norm_rms_epsilon"]?.float ?? 1e-6
        try config.validate()
        return config
    }

    static func defaultSliding(layers n: Int) -> [Bool] { (0..<n).map { ($0 + 1) % globalPeriod != 0 } }

    /// The sliding window, and the layer pattern when it is not the default one (after depth pruning, say).
    public func ggufExtraMetadata(_ config: ModelConfig, architecture arch: String) -> [(key: String, value: GGUFValue)] {
        var out: [(key: String, value: GGUFValue)] = [("\(arch).attention.sliding_window", .uint32(UInt32(config.slidingWindow)))]
        if !config.slidingLayers.isEmpty && config.slidingLayers != Self.defaultSliding(layers: config.layerCount) {
            out.append(("\(arch).attention.sliding_window_pattern", .array(config.slidingLayers.map { .int32($0 ? 1 : 0) })))
        }
        return out
    }

    public func hfExportLimitation(_ config: ModelConfig) -> String? {
        if !config.isUniform {
            return "layers differ (\(config.shapeSummary)): transformers' Gemma3TextConfig has a single head count and FFN width for all "
                + "layers"
        }
        if config.embeddingScale != Float(config.hiddenSize).squareRoot() {
            return "the embedding scale \(config.embeddingScale) is not √hidden_size, which transformers' Gemma 3 always uses"
        }
        return nil
    }

    public var hfModelTypes: [String] { ["gemma3_text", "gemma3"] }
    public var hfNormOffset: Float { 1 }

    /// `config.json` for `Gemma3ForCausalLM` (`gemma3_text`, uniform layers only).
    public func hfConfig(_ c: ModelConfig, tokenizer md: [String: GGUFValue]) throws -> Data? {
        guard hfExportLimitation(c) == nil else { return nil }
        var json = HFConfigWriter.common(c, className: hfClassName, modelType: "gemma3_text", tokenizer: md)
        json["hidden_activation"] = c.activation
        json["query_pre_attn_scalar"] = HFConfigWriter.decimal(c.queryPreAttentionScalar ?? Float(c.headDim))
        json["sliding_window"] = c.slidingWindow
        json["layer_types"] = (0..<c.layerCount).map { c.isSliding($0) ? "sliding_attention" : "full_attention" }
        json["rope_local_base_freq"] = HFConfigWriter.decimal(c.localRopeTheta ?? c.ropeTheta)
        json["final_logit_softcapping"] = NSNull()
        json["attn_logit_softcapping"] = NSNull()
        json["attention_bias"] = false
        json["use_bidirectional_attention"] = false
        return try HFConfigWriter.data(json)
    }

    /// A `gemma3_text` config (Gemma3ForCausalLM: Gemma 3 270M, 1B); `layer_types` or the older `sliding_window_pattern`
    /// says which layers are local; RoPE bases from `rope_theta` and `rope_local_base_freq` (or transformers 5's
    /// `rope_parameters` per layer type).
    public func config(hf: HFConfig) throws -> ModelConfig {
        if hf.modelType == "gemma3" {
            throw ModelError.invalidConfig(
                "\(hf.path): model_type 'gemma3' is the multimodal Gemma 3 (Gemma3ForConditionalGeneration); Topiary reads the text "
                    + "model, model_type 'gemma3_text' (Gemma3ForCausalLM: Gemma 3 270M and 1B)")
        }
        try hf.requireActivation(hf.json["hidden_activation"] != nil ? "hidden_activation" : "hidden_act", "gelu_pytorch_tanh")
        for key in ["final_logit_softcapping", "attn_logit_softcapping"] where try hf.float(key) != nil {
            throw ModelError.invalidConfig("\(hf.path): '\(key)' is set; Gemma 3 has no logit soft-capping and Topiary runs none")
        }
        if try hf.bool("use_bidirectional_attention") == true {
            throw ModelError.invalidConfig("\(hf.path): 'use_bidirectional_attention' is true; Topiary runs causal attention")
        }
        var config = try hf.decoder(modelType: modelType, tiedByDefault: true, defaultEps: 1e-6)
        config.headDim = try hf.optionalInt("head_dim") ?? 256
        config.ropeTheta = try hf.ropeTheta(layerType: "full_attention") ?? 1_000_000
        config.localRopeTheta =
            try hf.float("rope_local_base_freq") ?? (hf.json["rope_parameters"] != nil ? hf.ropeTheta(layerType: "sliding_attention") : nil)
            ?? 10_000
        let n = config.layerCount
        if let types = hf.json["layer_types"] as? [String] {
            guard types.count == n, types.allSatisfy({ $0 == "sliding_attention" || $0 == "full_attention" }) else {
                throw ModelError.invalidConfig(
                    "\(hf.path): 'layer_types' needs \(n) entries of sliding_attention or full_attention, found \(types)")
            }
            config.slidingLayers = types.map { $0 == "sliding_attention" }
        } else {
            let period = try hf.optionalInt("sliding_window_pattern") ?? hf.optionalInt("_sliding_window_pattern") ?? Self.globalPeriod
            guard period > 0 else { throw ModelError.invalidConfig("\(hf.path): 'sliding_window_pattern' is \(period)") }
            config.slidingLayers = (0..<n).map { ($0 + 1) % period != 0 }
        }
        config.slidingWindow = try hf.optionalInt("sliding_window") ?? 4096
        config.activation = "gelu_pytorch_tanh"
        config.embeddingScale = Float(config.hiddenSize).squareRoot()
        config.queryKeyNorm = true
        config.postBlockNorms = true
        config.queryPreAttentionScalar = try hf.float("query_pre_attn_scalar") ?? Float(config.headDim)
        config.attentionBias = try hf.bool("attention_bias") ?? false
        return try hf.validated(config)
    }
}
