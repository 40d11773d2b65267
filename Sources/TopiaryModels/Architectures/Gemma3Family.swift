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
        "Hugging Face export writes LLaMA models so far; a gemma3 model is exported as GGUF (--format gguf), which llama.cpp runs"
    }
}
