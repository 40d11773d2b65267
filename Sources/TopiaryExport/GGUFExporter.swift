import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGGUF
import TopiaryModels

/// The GGUF architecture name an export is written under: `auto` (the model family's choice — for LLaMA, `llama` when
/// every layer has the same shape and `deci` when layers differ) or a name the family can write (``ArchitectureFamily``).
public struct GGUFArchitecture: Sendable, Equatable {
    /// The requested `general.architecture`; nil for `auto`.
    public let requested: String?

    public static let auto = GGUFArchitecture(requested: nil)

    init(requested: String?) { self.requested = requested }

    public init(parsing text: String) throws {
        let name = text.lowercased()
        if name == "auto" { self = .auto; return }
        guard Architectures.family(gguf: name) != nil else { throw ExportError.unknownArchitecture(text) }
        self.init(requested: name)
    }
}

public struct GGUFExportOptions: Sendable {
    /// Storage type of the matrices, or a mix (norms and other 1-D tensors stay F32).
    public var type: GGUFExportType
    public var architecture: GGUFArchitecture
    /// `general.name` (default: the source's name, or "Topiary export").
    public var name: String?

    public init(type: GGUFExportType = .f32, architecture: GGUFArchitecture = .auto, name: String? = nil) {
        self.type = type
        self.architecture = architecture
        self.name = name
    }
}

/// One tensor of an export and the type it was stored in.
public struct ExportedTensor: Codable, Sendable, Equatable {
    public var name: String
    /// Dimensions as the file records them (ggml order for GGUF, row-major for safetensors).
    public var dimensions: [Int]
    public var type: String
    /// Why the type differs from the requested one, if it does.
    public var note: String?
}

/// What an export wrote.
public struct ExportReport: Codable, Sendable {
    /// `gguf`, `safetensors-hf` or `topiary` (a checkpoint written instead of an HF export).
    public var format: String
    public var path: String
    /// The GGUF architecture (`llama`, `deci`) or the Hugging Face class.
    public var architecture: String
    /// The requested tensor type (`Q4_K_M`, `F32`, …).
    public var type: String
    /// True when every layer has the same numbers of heads, KV heads and FFN channels.
    public var uniform: Bool
    public var bytes: Int
    /// Bits per weight of the tensor data: its bytes × 8 over the number of weights (norms included), as
    /// llama.cpp's loader reports a file's BPW.
    public var bitsPerWeight: Double
    public var tensors: [ExportedTensor]
    /// One line per kind of deviation from the requested type (e.g. rows that do not hold whole blocks), with the
    /// tensors it applies to.
    public var fallbacks: [String]
    public var notes: [String]
    public var mergedAdapters: Int

    enum CodingKeys: String, CodingKey {
        case format, path, architecture, type, uniform, bytes, tensors, fallbacks, notes
        case bitsPerWeight = "bits_per_weight", mergedAdapters = "merged_adapters"
    }
}

/// Writes a LLaMA-family model as a GGUF v3 file that llama.cpp loads: its standard metadata keys, the
/// tokenizer metadata of the source, tensors named and laid out as llama.cpp's converter writes them
/// (`attn_q`/`attn_k` rows permuted back for its pairwise RoPE), quantized by Topiary.
///
/// A model whose layers differ (structured pruning) is written under llama.cpp's `deci` architecture,
/// whose loader and graph size every layer from the per-layer arrays `deci.attention.head_count`,
/// `deci.attention.head_count_kv` and `deci.feed_forward_length`. llama.cpp's `llama` architecture reads
/// those keys as arrays too but builds every layer with layer 0's sizes, so it cannot hold such a model.
public enum GGUFExporter {
    /// Types Topiary can write.
    public static let types: [GGUFExportType] = GGUFExportType.allCases
    /// Their `--type` spellings: f32, f16, q8_0, q4_0, q4_1, q4_k, q5_k, q6_k, q4_k_m.
    public static var typeNames: [String] { types.map(\.rawValue) }

    /// The export type `text` names (case-insensitive).
    public static func parseType(_ text: String) throws -> GGUFExportType {
        guard let t = GGUFExportType(rawValue: text.lowercased()) else { throw ExportError.unknownType(text) }
        return t
    }

    /// The GGUF architecture `choice` resolves to for `config` (the family decides), or why llama.cpp could not run it.
    public static func resolveArchitecture(_ config: ModelConfig, _ choice: GGUFArchitecture) throws -> String {
        let family = try Architectures.family(of: config, path: "the model")
        do {
            return try family.ggufArchitecture(for: config, requested: choice.requested)
        } catch let limitation as ArchitectureLimitation {
            throw ExportError.inexpressible(limitation.message)
        }
    }

    /// The storage type of each tensor of `config` under `requested`, in the order the export writes them
    /// (``TensorTypePlan``): 1-D tensors stay F32; see ``GGUFExportType`` for the output matrix, the Q4_K_M mix and the
    /// fallbacks of rows that do not hold whole blocks.
    static func typePlan(_ config: ModelConfig, _ requested: GGUFExportType) -> TensorTypePlan {
        TensorTypePlan(
            requested: requested, tiedEmbeddings: config.tieWordEmbeddings, attentionValueCount: config.heads.filter { $0 > 0 }.count,
            layerCount: config.layerCount)
    }

    /// Writes `model` to `path` (atomically). `sourceMetadata` supplies the `tokenizer.*` keys (and
    /// `general.name`); a model carrying unmerged LoRA adapters is exported with them merged.
    @discardableResult
    public static func export(
        model input: DecoderModel, sourceMetadata: [String: GGUFValue], to path: String,
        options: GGUFExportOptions = GGUFExportOptions()
    ) throws -> ExportReport {
        let (model, merged) = try ExportWeights.plain(input)
        if model.store != nil {
            throw ExportError.unsupportedModel("a streamed model is written with exportStreamed (its weights are not in memory)")
        }
        var report = try write(
            model: model, config: model.config, sourceMetadata: sourceMetadata, to: path, options: options,
            prepareLayer: { _ in }, tensor: { p, _ in p.value }, raw: nil)
        if merged > 0 { report.notes.append("merged \(merged) LoRA adapters into the weights") }
        report.mergedAdapters = merged
        if let sparsity = ExportWeights.zeroFraction(model), sparsity >= 0.05 {
            report.notes.append(
                String(
                    format: "%.1f%% of the linear weights are zero (unstructured sparsity): stored dense, as GGUF has no sparse layout",
                    100 * sparsity))
        }
        return report
    }

    /// Writes a streamed model (``LayerStore``) tensor by tensor, so that no more than a layer of fp32 weights is in
    /// memory: `prepareLayer(l)` runs before layer `l`'s tensors are written (layers in order 0, 1, …: a sequential
    /// sparsifier prunes layer `l` there), `tensor` gives what to write for a parameter — nil copies the source file's
    /// bytes unchanged, in their original quantization. `config` is the written model's shape (after pruning).
    @discardableResult
    public static func exportStreamed(
        model: DecoderModel, config: ModelConfig, sourceMetadata: [String: GGUFValue], to path: String,
        options: GGUFExportOptions, prepareLayer: @escaping (Int) throws -> Void,
        changed: @escaping (Parameter) -> Bool,
        tensor: @escaping (Parameter, Int?) throws -> Tensor
    ) throws -> ExportReport {
        guard let store = model.store else { throw ExportError.unsupportedModel("exportStreamed needs a streamed model (a LayerStore)") }
        guard model.adapters.isEmpty else {
            throw ExportError.unsupportedModel("a streamed model with LoRA adapters cannot be exported; merge them first")
        }
        return try write(
            model: model, config: config, sourceMetadata: sourceMetadata, to: path, options: options,
            prepareLayer: prepareLayer, tensor: tensor,
            raw: { p in
                // Unchanged tensors keep the source's bytes (no second quantization), copied when written.
                guard !changed(p), let info = store.sourceTensor(of: p) else { return nil }
                return (
                    info,
                    {
                        defer { store.file.releasePages(of: info) }
                        return Data(store.file.rawBytes(of: info))
                    }
                )
            })
    }

    static func write(
        model: DecoderModel, config: ModelConfig, sourceMetadata: [String: GGUFValue], to path: String,
        options: GGUFExportOptions, prepareLayer: @escaping (Int) throws -> Void,
        tensor: @escaping (Parameter, Int?) throws -> Tensor,
        raw: ((Parameter) -> (GGUFTensorInfo, () -> Data)?)?
    ) throws -> ExportReport {
        let arch = try resolveArchitecture(config, options.architecture)
        let family = try Architectures.family(of: config, path: path)
        let tokenizer = sourceMetadata.filter { $0.key.hasPrefix("tokenizer.") }
        guard tokenizer["tokenizer.ggml.model"] != nil, tokenizer["tokenizer.ggml.tokens"] != nil else {
            throw ExportError.unsupportedModel("the source has no tokenizer metadata (tokenizer.ggml.*), which llama.cpp needs")
        }

        var w = GGUFWriter()
        w.set("general.architecture", .string(arch))
        w.set("general.name", .string(options.name ?? sourceMetadata["general.name"]?.string ?? "Topiary export"))
        if let license = sourceMetadata["general.license"]?.string { w.set("general.license", .string(license)) }
        w.set("general.file_type", .uint32(options.type.fileType))
        if options.type != .f32 && options.type != .f16 { w.set("general.quantization_version", .uint32(2)) }
        func perLayer(_ values: [Int]) -> GGUFValue {
            if let first = values.first, values.allSatisfy({ $0 == first }) { return .uint32(UInt32(first)) }
            return .array(values.map { .int32(Int32($0)) })
        }
        w.set("\(arch).vocab_size", .uint32(UInt32(config.vocabSize)))
        w.set("\(arch).context_length", .uint32(UInt32(config.contextLength)))
        w.set("\(arch).embedding_length", .uint32(UInt32(config.hiddenSize)))
        w.set("\(arch).block_count", .uint32(UInt32(config.layerCount)))
        w.set("\(arch).feed_forward_length", perLayer(config.intermediateSizes))
        w.set("\(arch).attention.head_count", perLayer(config.heads))
        w.set("\(arch).attention.head_count_kv", perLayer(config.kvHeads))
        w.set("\(arch).attention.key_length", .uint32(UInt32(config.headDim)))
        w.set("\(arch).attention.value_length", .uint32(UInt32(config.headDim)))
        w.set("\(arch).rope.dimension_count", .uint32(UInt32(config.headDim)))
        w.set("\(arch).rope.freq_base", .float32(config.ropeTheta))
        w.set("\(arch).attention.layer_norm_rms_epsilon", .float32(config.rmsNormEps))
        for (key, value) in family.ggufExtraMetadata(config, architecture: arch) { w.set(key, value) }
        for key in tokenizer.keys.sorted() { w.set(key, ggufTyped(tokenizer[key]!)) }

        var exported: [ExportedTensor] = []
        var fallbacks: [String: [String]] = [:]
        var plan = typePlan(config, options.type)
        // llama.cpp permutes q/k rows for its `llama`/`deci` RoPE; Qwen2 and Gemma 3 keep rotate-half order.
        let permutes = family.ggufPermutesRotary
        func add(_ name: String, _ p: Parameter, layer: Int?, shape: [Int], permuteHeads: Int? = nil) throws {
            // Chosen for every tensor, copied ones too: the Q4_K_M mix counts the attn_v and ffn_down tensors.
            let (type, note) = plan.type(name: name, shape: shape)
            if let raw, let (info, bytes) = raw(p) {
                guard info.shape == shape else {
                    throw ExportError.unsupportedModel(
                        "\(name): the source tensor has shape \(info.shape), the written model needs \(shape)")
                }
                exported.append(
                    ExportedTensor(name: name, dimensions: info.dimensions, type: "\(info.type)", note: "copied from the source"))
                try w.addTensor(name: name, dimensions: info.dimensions, type: info.type) { bytes() }
                return
            }
            let dims = Array(shape.reversed())
            exported.append(ExportedTensor(name: name, dimensions: dims, type: "\(type)", note: note))
            if let note { fallbacks[note, default: []].append(name) }
            try w.addTensor(name: name, dimensions: dims, type: type) {
                if let layer { try prepareLayer(layer) }
                let value = try tensor(p, layer)
                guard value.shape == shape else {
                    throw ExportError.unsupportedModel("\(name): produced shape \(value.shape), the written model needs \(shape)")
                }
                let t = permutes ? permuteHeads.map { GGUFModelLoader.permuteRotary(value, heads: $0) } ?? value : value
                return try GGUFWriter.encode(t, as: type, name: name)
            }
        }
        let d = config.hiddenSize, hd = config.headDim
        try add("token_embd.weight", model.embedding, layer: nil, shape: [config.vocabSize, d])
        for (l, layer) in model.layers.enumerated() {
            let b = "blk.\(l).", nq = config.heads[l] * hd, nkv = config.kvHeads[l] * hd, f = config.intermediateSizes[l]
            if config.heads[l] > 0 {
                try add(b + "attn_norm.weight", layer.attentionNorm, layer: l, shape: [d])
                try add(b + "attn_q.weight", layer.q, layer: l, shape: [nq, d], permuteHeads: config.heads[l])
                try add(b + "attn_k.weight", layer.k, layer: l, shape: [nkv, d], permuteHeads: config.kvHeads[l])
                try add(b + "attn_v.weight", layer.v, layer: l, shape: [nkv, d])
                if let qb = layer.qBias, let kb = layer.kBias, let vb = layer.vBias {
                    try add(b + "attn_q.bias", qb, layer: l, shape: [nq])
                    try add(b + "attn_k.bias", kb, layer: l, shape: [nkv])
                    try add(b + "attn_v.bias", vb, layer: l, shape: [nkv])
                }
                if let qn = layer.qNorm, let kn = layer.kNorm {
                    try add(b + "attn_q_norm.weight", qn, layer: l, shape: [hd])
                    try add(b + "attn_k_norm.weight", kn, layer: l, shape: [hd])
                }
                try add(b + "attn_output.weight", layer.o, layer: l, shape: [d, nq])
                if let pn = layer.postAttentionNorm { try add(b + "post_attention_norm.weight", pn, layer: l, shape: [d]) }
            }
            if config.intermediateSizes[l] > 0 {
                try add(b + "ffn_norm.weight", layer.ffnNorm, layer: l, shape: [d])
                try add(b + "ffn_gate.weight", layer.gate, layer: l, shape: [f, d])
                try add(b + "ffn_up.weight", layer.up, layer: l, shape: [f, d])
                try add(b + "ffn_down.weight", layer.down, layer: l, shape: [d, f])
                if let pn = layer.postFFNNorm { try add(b + "post_ffw_norm.weight", pn, layer: l, shape: [d]) }
            }
        }
        try add("output_norm.weight", model.norm, layer: nil, shape: [d])
        if !config.tieWordEmbeddings { try add("output.weight", model.output, layer: nil, shape: [config.vocabSize, d]) }

        let notes = family.ggufNotes(config, architecture: arch)
        try w.write(to: path)
        let bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? w.fileSize
        let weights = w.tensors.reduce(0) { $0 + $1.dimensions.reduce(1, *) }
        let dataBits = 8 * w.tensors.reduce(0) { $0 + $1.byteCount }
        return ExportReport(
            format: "gguf", path: path, architecture: arch, type: "\(options.type)", uniform: config.isUniform, bytes: bytes,
            bitsPerWeight: weights > 0 ? Double(dataBits) / Double(weights) : 0, tensors: exported,
            fallbacks: fallbacks.sorted { $0.key < $1.key }.map { fallbackLine($0.key, $0.value) }, notes: notes, mergedAdapters: 0)
    }

    /// `3 tensors: NOTE (blk.0.ffn_down.weight, …)`, naming at most eight of them (the report's `tensors` has each).
    static func fallbackLine(_ note: String, _ names: [String]) -> String {
        let shown = names.prefix(8).joined(separator: ", ") + (names.count > 8 ? ", and \(names.count - 8) more" : "")
        return "\(names.count) tensors: \(note) (\(shown))"
    }

    /// Tokenizer values as GGUF types them. A checkpoint keeps its tokenizer metadata in JSON, which
    /// widens integers to Int64 and floats to Float64; llama.cpp checks key types (token ids UINT32,
    /// `token_type` an INT32 array, `scores` a FLOAT32 array), so 64-bit values are narrowed back.
    static func ggufTyped(_ v: GGUFValue) -> GGUFValue {
        switch v {
        case let .int64(x): return x >= 0 && x <= Int64(UInt32.max) ? .uint32(UInt32(x)) : .int32(Int32(clamping: x))
        case let .uint64(x): return .uint32(UInt32(clamping: x))
        case let .float64(x): return .float32(Float(x))
        case let .array(items):
            return .array(
                items.map { item in
                    switch item {
                    case let .int64(x): return .int32(Int32(clamping: x))
                    case let .float64(x): return .float32(Float(x))
                    default: return item
                    }
                })
        default: return v
        }
    }
}
