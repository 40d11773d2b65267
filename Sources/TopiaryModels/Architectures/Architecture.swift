import Foundation
import TopiaryGGUF

/// One model family Topiary runs: how its configuration is read from a GGUF header, what its Hugging Face names are,
/// and what llama.cpp and transformers need to run it again. Every family is the same decoder (``DecoderModel`` with
/// ``ModelConfig``'s variations); a family maps its formats onto that decoder.
///
/// Adding a family is one file with a type that conforms to this protocol plus one line in ``Architectures/all``.
public protocol ArchitectureFamily: Sendable {
    /// The name `ModelConfig.architecture` and a checkpoint's `config.json` (`model_type`) carry.
    var modelType: String { get }
    /// The `general.architecture` values of GGUF files this family reads.
    var ggufArchitectures: [String] { get }
    /// The transformers class (`config.json`'s `architectures`).
    var hfClassName: String { get }
    /// Whether llama.cpp's converter stores `attn_q`/`attn_k` rows permuted for interleaved RoPE (LLaMA only).
    var ggufPermutesRotary: Bool { get }
    /// Whether q/k/v carry biases when a `config.json` does not say (`attention_bias` absent).
    var defaultAttentionBias: Bool { get }
    /// The decoder's configuration from a GGUF header whose `general.architecture` is `architecture`.
    func config(gguf file: GGUFFile, architecture: String, name: String) throws -> ModelConfig
    /// The `general.architecture` to write `config` under (`requested`: a user's choice, nil for the family's
    /// default), or an ``ArchitectureLimitation`` saying why llama.cpp could not run it.
    func ggufArchitecture(for config: ModelConfig, requested: String?) throws -> String
    /// Metadata keys beyond the common decoder keys that a GGUF of this family needs (`arch` is the written name).
    func ggufExtraMetadata(_ config: ModelConfig, architecture arch: String) -> [(key: String, value: GGUFValue)]
    /// What a GGUF export's report says about how the model was written.
    func ggufNotes(_ config: ModelConfig, architecture arch: String) -> [String]
    /// Why a Hugging Face export (transformers) cannot hold this model, or nil when it can.
    func hfExportLimitation(_ config: ModelConfig) -> String?
    /// The transformers `config.json` for `config` (nil when transformers cannot describe it: see `hfExportLimitation`).
    func hfConfig(_ config: ModelConfig, tokenizer: [String: GGUFValue]) throws -> Data?
    /// The `model_type` values of transformers `config.json` files this family reads.
    var hfModelTypes: [String] { get }
    /// The decoder's configuration from a transformers `config.json`.
    func config(hf: HFConfig) throws -> ModelConfig
    /// What a transformers checkpoint's RMSNorm weights lack: Gemma stores `w` and scales by `1 + w`, Topiary (like
    /// llama.cpp) keeps `1 + w`; 0 for the others.
    var hfNormOffset: Float { get }
    /// The formats that can carry a model of this family whose layers differ (for the message that refuses an HF export).
    var perLayerFormats: String { get }
}

extension ArchitectureFamily {
    public var ggufPermutesRotary: Bool { false }
    public var defaultAttentionBias: Bool { false }
    public var hfModelTypes: [String] { [modelType] }
    public var hfNormOffset: Float { 0 }
    public var perLayerFormats: String {
        "GGUF (--format gguf) with per-layer arrays, which Topiary reads back (llama.cpp's \(modelType) sizes every layer from "
            + "layer 0, so it cannot run it), or a Topiary checkpoint"
    }
    public func ggufNotes(_ config: ModelConfig, architecture arch: String) -> [String] {
        config.isUniform
            ? []
            : [
                "layers differ (\(config.shapeSummary)): written as '\(arch)' with per-layer arrays, which Topiary reads back; "
                    + "llama.cpp's \(arch) sizes every layer from layer 0 and will not load it (prune with equal widths per layer "
                    + "for llama.cpp, e.g. --rounding nearest)"
            ]
    }
    public func hfConfig(_ config: ModelConfig, tokenizer: [String: GGUFValue]) throws -> Data? { nil }
    public func ggufExtraMetadata(_ config: ModelConfig, architecture arch: String) -> [(key: String, value: GGUFValue)] { [] }
    public func ggufArchitecture(for config: ModelConfig, requested: String?) throws -> String {
        if let requested, requested != modelType {
            throw ArchitectureLimitation("a \(modelType) model is written as GGUF architecture '\(modelType)', not '\(requested)'")
        }
        return modelType
    }
}

/// Why a model cannot be written in a format (the message names the format that can carry it).
public struct ArchitectureLimitation: Error, LocalizedError, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var errorDescription: String? { message }
}

/// The registry of model families: the one place that lists them.
public enum Architectures {
    public static let all: [any ArchitectureFamily] = [LlamaFamily(), Qwen2Family(), Gemma3Family()]

    /// The family of a `ModelConfig.architecture` / `config.json` `model_type`.
    public static func family(modelType: String) -> (any ArchitectureFamily)? {
        all.first { $0.modelType == modelType }
    }

    /// The family that reads transformers `config.json` files of `model_type` `name`.
    public static func family(hfModelType name: String) -> (any ArchitectureFamily)? {
        all.first { $0.hfModelTypes.contains(name) }
    }

    /// The family that reads GGUF files of `general.architecture` `name`.
    public static func family(gguf name: String) -> (any ArchitectureFamily)? {
        all.first { $0.ggufArchitectures.contains(name) }
    }

    /// The family of a configuration, or the error that names what is supported.
    public static func family(of config: ModelConfig, path: String) throws -> any ArchitectureFamily {
        guard let f = family(modelType: config.architecture) else {
            throw ModelError.unsupportedArchitecture(path: path, architecture: config.architecture)
        }
        return f
    }

    /// Every name a file may carry (GGUF architectures and model types), for messages.
    public static var supportedNames: [String] {
        var names: [String] = []
        for f in all { for n in [f.modelType] + f.ggufArchitectures + f.hfModelTypes where !names.contains(n) { names.append(n) } }
        return names
    }
}

/// The decoder keys every family's GGUF shares (`<arch>.block_count`, `.embedding_length`, head counts, FFN widths,
/// RoPE base, norm epsilon, context length); per-layer values are read as a scalar or an array of one entry per layer.
public enum GGUFDecoderKeys {
    public static func config(_ file: GGUFFile, name: String, prefix a: String, modelType: String) throws -> ModelConfig {
        let md = file.metadata
        func int(_ key: String) throws -> Int {
            guard let v = md[key]?.int else { throw ModelError.missingMetadata(path: name, key: key) }
            return v
        }
        func perLayer(_ key: String, layers: Int, default d: Int? = nil) throws -> [Int] {
            if let v = md[key]?.int { return Array(repeating: v, count: layers) }
            if let arr = md[key]?.intArray {
                guard arr.count == layers else {
                    throw ModelError.invalidConfig("\(name): '\(key)' has \(arr.count) entries for \(layers) layers")
                }
                return arr
            }
            if let d { return Array(repeating: d, count: layers) }
            throw ModelError.missingMetadata(path: name, key: key)
        }
        let layers = try int("\(a).block_count")
        guard (1...ModelConfig.maxLayers).contains(layers) else {
            throw ModelError.invalidConfig("\(name): '\(a).block_count' is \(layers) (1 to \(ModelConfig.maxLayers) allowed)")
        }
        let hidden = try int("\(a).embedding_length")
        let heads = try perLayer("\(a).attention.head_count", layers: layers)
        let kv = try perLayer("\(a).attention.head_count_kv", layers: layers, default: heads.first(where: { $0 > 0 }) ?? 1)
        let ffn = try perLayer("\(a).feed_forward_length", layers: layers)
        let maxHeads = heads.max() ?? 0
        let headDim = md["\(a).attention.key_length"]?.int ?? (maxHeads > 0 ? hidden / maxHeads : 64)
        guard let embed = file.tensor(named: "token_embd.weight") else {
            throw ModelError.missingTensor(path: name, name: "token_embd.weight")
        }
        var config = ModelConfig(
            architecture: modelType, vocabSize: embed.shape[0], hiddenSize: hidden, headDim: headDim, heads: heads, kvHeads: kv,
            intermediateSizes: ffn, ropeTheta: md["\(a).rope.freq_base"]?.float ?? 10_000,
            rmsNormEps: md["\(a).attention.layer_norm_rms_epsilon"]?.float ?? 1e-5,
            contextLength: md["\(a).context_length"]?.int ?? 2048,
            tieWordEmbeddings: file.tensor(named: "output.weight") == nil)
        config.attentionBias = file.tensor(named: "blk.0.attn_q.bias") != nil
        try config.validate()
        return config
    }
}
