import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGGUF
import TopiaryTokenizers

/// A model ready to run: weights, tokenizer and where they came from.
public struct LoadedModel: @unchecked Sendable {
    public let model: DecoderModel
    public let tokenizer: any Tokenizer
    /// The file or directory the model was read from.
    public let source: String
    /// Storage type of each tensor in the source file (e.g. `Q4_1`), by GGUF tensor name.
    public let sourceTensorTypes: [String: String]
    /// The GGUF metadata of the source (tokenizer keys included), for export and checkpoints.
    public let metadata: [String: GGUFValue]
}

/// Reads decoder models from GGUF files into fp32 ``DecoderModel``s; the family registry (``Architectures``) maps each
/// `general.architecture` to the decoder's configuration.
public enum GGUFModelLoader {
    /// Every GGUF architecture the loader reads.
    public static var supportedArchitectures: [String] { Architectures.all.flatMap(\.ggufArchitectures) }

    /// Loads the model and its tokenizer from a GGUF file. With `streamLayers` > 0 the weights stay quantized in
    /// the mapped file and at most that many layers are dequantized at a time (see ``LayerStore``).
    public static func load(path: String, streamLayers: Int = 0) throws -> LoadedModel {
        let file = try GGUFFile(path: path)
        let name = (path as NSString).lastPathComponent
        guard let arch = file.metadata["general.architecture"]?.string else {
            throw ModelError.missingMetadata(path: name, key: "general.architecture")
        }
        guard let family = Architectures.family(gguf: arch) else {
            throw ModelError.unsupportedArchitecture(path: name, architecture: arch)
        }
        let config = try family.config(gguf: file, architecture: arch, name: name)
        let tokenizer = try tokenizerFromMetadata(file.metadata, name: name)
        let model = try llamaModel(file, config: config, name: name, permuted: family.ggufPermutesRotary, streamLayers: streamLayers)
        var types: [String: String] = [:]
        for t in file.tensors { types[t.name] = "\(t.type)" }
        return LoadedModel(model: model, tokenizer: tokenizer, source: path, sourceTensorTypes: types, metadata: file.metadata)
    }

    // MARK: weights

    static func llamaModel(
        _ file: GGUFFile, config: ModelConfig, name: String, permuted: Bool, streamLayers: Int = 0
    ) throws -> DecoderModel {
        let streaming = streamLayers > 0
        var entries: [LayerStore.Entry] = []
        func load(_ ggufName: String, as hfName: String, shape: [Int], unpermuteHeads: Int? = nil) throws -> Parameter {
            // A removed block (no heads or no FFN channels left) has no tensors in the file: empty weights
            // (and a unit norm, which the layer never uses) stand in for them.
            if shape.contains(0) { return Parameter(name: hfName, value: Tensor(zeros: shape)) }
            guard let info = file.tensor(named: ggufName) else { throw ModelError.missingTensor(path: name, name: ggufName) }
            guard info.shape == shape else { throw ModelError.tensorShape(path: name, name: ggufName, expected: shape, found: info.shape) }
            if streaming {
                guard info.type.canDequantize else {
                    throw GGUFError.unsupportedTensorType(path: file.path, tensor: info.name, type: "\(info.type)")
                }
                let p = Parameter(name: hfName, offloadedShape: shape)
                entries.append(LayerStore.Entry(parameter: p, info: info, unpermuteHeads: unpermuteHeads))
                return p
            }
            var t = try file.dequantize(info)
            if let heads = unpermuteHeads { t = unpermuteRotary(t, heads: heads) }
            return Parameter(name: hfName, value: t.reshaped(shape))
        }
        let d = config.hiddenSize, hd = config.headDim
        let embedding = try load("token_embd.weight", as: "model.embed_tokens.weight", shape: [config.vocabSize, d])
        let embeddingEntry = entries.popLast()
        var layers: [DecoderLayer] = []
        var layerEntries: [[LayerStore.Entry]] = []
        for l in 0..<config.layerCount {
            let b = "blk.\(l).", n = DecoderModel.parameterNames(layer: l, config: config)
            let nq = config.heads[l] * hd, nkv = config.kvHeads[l] * hd, f = config.intermediateSizes[l]
            func norm(_ ggufName: String, as hfName: String, present: Bool) throws -> Parameter {
                if present || file.tensor(named: ggufName) != nil { return try load(ggufName, as: hfName, shape: [d]) }
                return Parameter(name: hfName, value: Tensor(shape: [d], values: [Float](repeating: 1, count: d)))
            }
            var layer = DecoderLayer(
                attentionNorm: try norm(b + "attn_norm.weight", as: n.attentionNorm, present: nq > 0),
                q: try load(b + "attn_q.weight", as: n.q, shape: [nq, d], unpermuteHeads: permuted ? config.heads[l] : nil),
                k: try load(b + "attn_k.weight", as: n.k, shape: [nkv, d], unpermuteHeads: permuted ? config.kvHeads[l] : nil),
                v: try load(b + "attn_v.weight", as: n.v, shape: [nkv, d]),
                o: try load(b + "attn_output.weight", as: n.o, shape: [d, nq]),
                ffnNorm: try norm(b + "ffn_norm.weight", as: n.ffnNorm, present: f > 0),
                gate: try load(b + "ffn_gate.weight", as: n.gate, shape: [f, d]),
                up: try load(b + "ffn_up.weight", as: n.up, shape: [f, d]),
                down: try load(b + "ffn_down.weight", as: n.down, shape: [d, f]))
            if config.queryKeyNorm {
                layer.qNorm = try load(b + "attn_q_norm.weight", as: n.qNorm, shape: [hd])
                layer.kNorm = try load(b + "attn_k_norm.weight", as: n.kNorm, shape: [hd])
            }
            if config.postBlockNorms {
                layer.postAttentionNorm = try norm(b + "post_attention_norm.weight", as: n.postAttentionNorm, present: nq > 0)
                layer.postFFNNorm = try norm(b + "post_ffw_norm.weight", as: n.postFFNNorm, present: f > 0)
            }
            if config.attentionBias {
                layer.qBias = try load(b + "attn_q.bias", as: n.qBias, shape: [nq])
                layer.kBias = try load(b + "attn_k.bias", as: n.kBias, shape: [nkv])
                layer.vBias = try load(b + "attn_v.bias", as: n.vBias, shape: [nkv])
            }
            layers.append(layer)
            layerEntries.append(entries)
            entries = []
        }
        let norm = try load("output_norm.weight", as: "model.norm.weight", shape: [d])
        let output =
            config.tieWordEmbeddings
            ? embedding : try load("output.weight", as: "lm_head.weight", shape: [config.vocabSize, d])
        // A tied output is the embedding itself: the head loads the whole table.
        let headEntries = entries + (config.tieWordEmbeddings ? embeddingEntry.map { [$0] } ?? [] : [])
        let model = try DecoderModel(config: config, embedding: embedding, layers: layers, norm: norm, output: output)
        if streaming {
            model.store = LayerStore(file: file, capacity: streamLayers, layers: layerEntries, head: headEntries, embedding: embeddingEntry)
        }
        return model
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
        try TokenizerVocabulary(ggufMetadata: md, name: name).makeTokenizer(source: name)
    }
}
