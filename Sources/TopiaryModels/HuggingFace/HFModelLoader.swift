import Foundation
import TopiaryCore
import TopiaryGGUF
import TopiaryTokenizers

/// Reads a Hugging Face model directory, as transformers' `save_pretrained` writes it: `config.json` (its `model_type`
/// picks the family: `llama`, `qwen2`, `gemma3_text`), `model.safetensors` or shards with `model.safetensors.index.json`
/// (F32, F16 or BF16, converted to fp32 tensor by tensor from the mapped files), and `tokenizer.json` with
/// `tokenizer_config.json` and `generation_config.json`.
///
/// Tensor names are transformers' (Topiary's own); q/k projections are in transformers' rotate-half layout, which
/// Topiary keeps (GGUF files permute them for llama.cpp and are unpermuted on loading). Gemma's norm weights are stored
/// as `w` for a scale of `1 + w` and get the 1 added, as llama.cpp's converter does.
///
/// ```swift
/// let loaded = try HFModelLoader.load(directory: "models/gemma-3-270m")
/// ```
public enum HFModelLoader {
    /// True when `path` is a directory with a transformers `config.json` and weights that is not a Topiary checkpoint
    /// (one has `tokenizer_metadata.json` and `manifest.json`).
    public static func isHuggingFaceDirectory(_ path: String) -> Bool {
        let fm = FileManager.default
        var dir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &dir), dir.boolValue, fm.fileExists(atPath: path + "/config.json") else {
            return false
        }
        return !fm.fileExists(atPath: path + "/tokenizer_metadata.json") && !fm.fileExists(atPath: path + "/manifest.json")
    }

    public static func load(directory: String) throws -> LoadedModel {
        let hf = try HFConfig(path: directory + "/config.json")
        guard let modelType = hf.modelType else { throw ModelError.invalidConfig("\(hf.path): missing key 'model_type'") }
        guard let family = Architectures.family(hfModelType: modelType) else {
            throw ModelError.unsupportedModelType(path: hf.path, modelType: modelType)
        }
        let config = try family.config(hf: hf)
        let weights = try HFWeights(directory: directory)
        let vocabulary = try TokenizerVocabulary(huggingFaceDirectory: directory)
        let tokenizer = try vocabulary.makeTokenizer(source: directory + "/tokenizer.json")
        let model = try decoder(config: config, weights: weights, normOffset: family.hfNormOffset, source: directory)
        var metadata = vocabulary.ggufMetadata
        metadata["general.name"] = .string((directory as NSString).standardizingPath.components(separatedBy: "/").last ?? directory)
        var types: [String: String] = [:]
        for p in model.parameters { types[p.name] = weights.dtype(of: p.name) ?? "F32" }
        return LoadedModel(model: model, tokenizer: tokenizer, source: directory, sourceTensorTypes: types, metadata: metadata)
    }

    /// The tensors the decoder of `config` needs, under their transformers names.
    public static func tensorNames(_ config: ModelConfig) -> [String] {
        var names = ["model.embed_tokens.weight"]
        for l in 0..<config.layerCount {
            let n = DecoderModel.parameterNames(layer: l, config: config)
            names += [n.attentionNorm, n.q, n.k, n.v, n.o, n.ffnNorm, n.gate, n.up, n.down]
            if config.queryKeyNorm { names += [n.qNorm, n.kNorm] }
            if config.postBlockNorms { names += [n.postAttentionNorm, n.postFFNNorm] }
            if config.attentionBias { names += [n.qBias, n.kBias, n.vBias] }
        }
        names.append("model.norm.weight")
        if !config.tieWordEmbeddings { names.append("lm_head.weight") }
        return names
    }

    /// Whether a tensor is an RMSNorm weight (Gemma's `1 + w` applies to these).
    public static func isNorm(_ name: String) -> Bool { name.hasSuffix("norm.weight") }

    static func decoder(config: ModelConfig, weights: HFWeights, normOffset: Float, source: String) throws -> DecoderModel {
        var tensors: [String: Tensor] = [:]
        for name in tensorNames(config) {
            let t = try weights.tensor(name)
            if normOffset != 0 && isNorm(name) {
                for i in 0..<t.count { t.pointer[i] += normOffset }
            }
            tensors[name] = t
        }
        return try DecoderModel(config: config, weights: tensors, source: source)
    }
}
