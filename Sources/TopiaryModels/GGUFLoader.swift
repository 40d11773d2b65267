import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGGUF
import TopiaryTokenizers

/// A model ready to run: weights, tokenizer and where they came from.
public struct LoadedModel: @unchecked Sendable {
    public let model: any LanguageModel
    public let tokenizer: any Tokenizer
    /// The file or directory the model was read from.
    public let source: String
    /// Storage type of each tensor in the source file (e.g. `Q4_1`), by GGUF tensor name.
    public let sourceTensorTypes: [String: String]
    /// The GGUF metadata of the source (tokenizer keys included), for export and checkpoints.
    public let metadata: [String: GGUFValue]
}

/// Reads LLaMA-family models from GGUF files into fp32 ``LlamaModel``s.
///
/// Besides `llama`, the loader reads llama.cpp's `deci` architecture (DeciLM / Nemotron-NAS): the same
/// LLaMA layer, with per-layer head counts and FFN widths that llama.cpp honours, and layers whose
/// attention (`head_count` 0) or FFN (`feed_forward_length` 0) was removed stored without those tensors.
/// Topiary's exporter writes per-layer-shaped models that way.
public enum GGUFModelLoader {
    /// GGUF architectures read as a LLaMA graph.
    public static let llamaArchitectures = ["llama", "deci"]

    /// Loads the model and its tokenizer from a GGUF file.
    public static func load(path: String) throws -> LoadedModel {
        let file = try GGUFFile(path: path)
        let name = (path as NSString).lastPathComponent
        guard let arch = file.metadata["general.architecture"]?.string else {
            throw ModelError.missingMetadata(path: name, key: "general.architecture")
        }
        guard llamaArchitectures.contains(arch) else { throw ModelError.unsupportedArchitecture(path: name, architecture: arch) }
        let config = try llamaConfig(file, name: name, prefix: arch)
        let tokenizer = try tokenizerFromMetadata(file.metadata, name: name)
        let model = try llamaModel(file, config: config, name: name)
        var types: [String: String] = [:]
        for t in file.tensors { types[t.name] = "\(t.type)" }
        return LoadedModel(model: model, tokenizer: tokenizer, source: path, sourceTensorTypes: types, metadata: file.metadata)
    }

    // MARK: configuration

    static func llamaConfig(_ file: GGUFFile, name: String, prefix a: String = "llama") throws -> ModelConfig {
        let md = file.metadata
        func int(_ key: String) throws -> Int {
            guard let v = md[key]?.int else { throw ModelError.missingMetadata(path: name, key: key) }
            return v
        }
        /// A per-layer value: a scalar (same for all layers) or an array of `layers` entries.
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
        guard let embed = file.tensor(named: "token_embd.weight") else { throw ModelError.missingTensor(path: name, name: "token_embd.weight") }
        let vocab = embed.shape[0]
        let config = ModelConfig(
            architecture: "llama", vocabSize: vocab, hiddenSize: hidden, headDim: headDim, heads: heads, kvHeads: kv,
            intermediateSizes: ffn, ropeTheta: md["\(a).rope.freq_base"]?.float ?? 10_000,
            rmsNormEps: md["\(a).attention.layer_norm_rms_epsilon"]?.float ?? 1e-5,
            contextLength: md["\(a).context_length"]?.int ?? 2048,
            tieWordEmbeddings: file.tensor(named: "output.weight") == nil)
        try config.validate()
        return config
    }

    // MARK: weights

    static func llamaModel(_ file: GGUFFile, config: ModelConfig, name: String) throws -> LlamaModel {
        func load(_ ggufName: String, as hfName: String, shape: [Int], unpermuteHeads: Int? = nil) throws -> Parameter {
            // A removed block (no heads or no FFN channels left) has no tensors in the file: empty weights
            // (and a unit norm, which the layer never uses) stand in for them.
            if shape.contains(0) { return Parameter(name: hfName, value: Tensor(zeros: shape)) }
            guard let info = file.tensor(named: ggufName) else { throw ModelError.missingTensor(path: name, name: ggufName) }
            guard info.shape == shape else { throw ModelError.tensorShape(path: name, name: ggufName, expected: shape, found: info.shape) }
            var t = try file.dequantize(info)
            if let heads = unpermuteHeads { t = unpermuteRotary(t, heads: heads) }
            return Parameter(name: hfName, value: t.reshaped(shape))
        }
        let d = config.hiddenSize, hd = config.headDim
        let embedding = try load("token_embd.weight", as: "model.embed_tokens.weight", shape: [config.vocabSize, d])
        var layers: [LlamaLayer] = []
        for l in 0..<config.layerCount {
            let b = "blk.\(l).", n = LlamaModel.parameterNames(layer: l)
            let nq = config.heads[l] * hd, nkv = config.kvHeads[l] * hd, f = config.intermediateSizes[l]
            func norm(_ ggufName: String, as hfName: String, present: Bool) throws -> Parameter {
                if present || file.tensor(named: ggufName) != nil { return try load(ggufName, as: hfName, shape: [d]) }
                return Parameter(name: hfName, value: Tensor(shape: [d], values: [Float](repeating: 1, count: d)))
            }
            layers.append(LlamaLayer(
                attentionNorm: try norm(b + "attn_norm.weight", as: n[0], present: nq > 0),
                q: try load(b + "attn_q.weight", as: n[1], shape: [nq, d], unpermuteHeads: config.heads[l]),
                k: try load(b + "attn_k.weight", as: n[2], shape: [nkv, d], unpermuteHeads: config.kvHeads[l]),
                v: try load(b + "attn_v.weight", as: n[3], shape: [nkv, d]),
                o: try load(b + "attn_output.weight", as: n[4], shape: [d, nq]),
                ffnNorm: try norm(b + "ffn_norm.weight", as: n[5], present: f > 0),
                gate: try load(b + "ffn_gate.weight", as: n[6], shape: [f, d]),
                up: try load(b + "ffn_up.weight", as: n[7], shape: [f, d]),
                down: try load(b + "ffn_down.weight", as: n[8], shape: [d, f])))
        }
        let norm = try load("output_norm.weight", as: "model.norm.weight", shape: [d])
        let output = config.tieWordEmbeddings
            ? embedding : try load("output.weight", as: "lm_head.weight", shape: [config.vocabSize, d])
        return try LlamaModel(config: config, embedding: embedding, layers: layers, norm: norm, output: output)
    }

    /// llama.cpp's converter reorders the rows of `attn_q`/`attn_k` within each head so that RoPE
    /// rotates adjacent pairs `(2i, 2i+1)`. Topiary keeps the Hugging Face layout (rotate-half), so the
    /// loader undoes it: GGUF row `2i + j` of a head becomes row `j·(headDim/2) + i`.
    public static func unpermuteRotary(_ w: Tensor, heads: Int) -> Tensor {
        permuteRotaryRows(w, heads: heads, toGGUF: false)
    }

    /// The inverse of ``unpermuteRotary(_:heads:)`` (for writing GGUF files).
    public static func permuteRotary(_ w: Tensor, heads: Int) -> Tensor {
        permuteRotaryRows(w, heads: heads, toGGUF: true)
    }

    static func permuteRotaryRows(_ w: Tensor, heads: Int, toGGUF: Bool) -> Tensor {
        guard heads > 0, w.rank == 2 else { return w }
        let rows = w.shape[0], cols = w.shape[1], hd = rows / heads, half = hd / 2
        let out = Tensor(uninitialized: w.shape)
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 {
                    let gguf = h * hd + 2 * i + j, hf = h * hd + j * half + i
                    let (src, dst) = toGGUF ? (hf, gguf) : (gguf, hf)
                    (out.pointer + dst * cols).update(from: w.pointer + src * cols, count: cols)
                }
            }
        }
        return out
    }

    // MARK: tokenizer

    /// Builds the tokenizer described by the `tokenizer.ggml.*` metadata.
    public static func tokenizerFromMetadata(_ md: [String: GGUFValue], name: String) throws -> any Tokenizer {
        guard let model = md["tokenizer.ggml.model"]?.string else {
            throw ModelError.missingMetadata(path: name, key: "tokenizer.ggml.model")
        }
        guard let tokens = md["tokenizer.ggml.tokens"]?.stringArray else {
            throw ModelError.missingMetadata(path: name, key: "tokenizer.ggml.tokens")
        }
        switch model {
        case "gpt2":
            guard let merges = md["tokenizer.ggml.merges"]?.stringArray else {
                throw ModelError.missingMetadata(path: name, key: "tokenizer.ggml.merges")
            }
            return try BPETokenizer(
                tokens: tokens, merges: merges, tokenTypes: md["tokenizer.ggml.token_type"]?.intArray,
                preTokenizer: md["tokenizer.ggml.pre"]?.string ?? "default",
                bosTokenID: md["tokenizer.ggml.bos_token_id"]?.int, eosTokenID: md["tokenizer.ggml.eos_token_id"]?.int,
                unknownTokenID: md["tokenizer.ggml.unknown_token_id"]?.int,
                addBOS: md["tokenizer.ggml.add_bos_token"]?.bool ?? false,
                addEOS: md["tokenizer.ggml.add_eos_token"]?.bool ?? false)
        default:
            throw ModelError.invalidConfig("\(name): tokenizer model '\(model)' is not supported yet (supported: gpt2 byte-level BPE)")
        }
    }
}
