import Foundation

/// The shape of a decoder-only transformer, with per-layer sizes stored as data so that a pruned
/// model (whose layers keep different numbers of heads and FFN channels) is described exactly.
public struct ModelConfig: Codable, Sendable, Equatable {
    /// Architecture name as GGUF spells it (`llama`, `gemma3`, `qwen2`).
    public var architecture: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var headDim: Int
    /// Query heads per layer.
    public var heads: [Int]
    /// Key/value heads per layer.
    public var kvHeads: [Int]
    /// Feed-forward (intermediate) width per layer.
    public var intermediateSizes: [Int]
    public var ropeTheta: Float
    public var rmsNormEps: Float
    public var contextLength: Int
    public var tieWordEmbeddings: Bool

    // Variations of the decoder (defaults: LLaMA). Gemma 3 sets all of them; see `GGUFModelLoader`.

    /// Activation of the gated MLP: `silu` (SwiGLU, LLaMA) or `gelu_pytorch_tanh` (GeGLU, Gemma).
    public var activation = "silu"
    /// Multiplies the token embeddings before the first layer (Gemma: √hidden; the tied output is not scaled).
    public var embeddingScale: Float = 1
    /// RMSNorm of each query and key head (one `[headDim]` weight each for q and k) before RoPE (Gemma 3).
    public var queryKeyNorm = false
    /// RMSNorm of the attention and FFN outputs before their residual add (Gemma 2/3's "sandwich" norms).
    public var postBlockNorms = false
    /// The attention scale is `queryPreAttentionScalar^-½` (Gemma); nil: `headDim^-½`.
    public var queryPreAttentionScalar: Float?
    /// Keys a query of a local layer sees (itself included); 0: no local layers.
    public var slidingWindow = 0
    /// Per layer, whether it is a local (sliding-window) layer; empty when every layer is global.
    public var slidingLayers: [Bool] = []
    /// RoPE base of the local layers (Gemma 3: 10 000); nil: ``ropeTheta``.
    public var localRopeTheta: Float?
    /// Biases on the query, key and value projections (Qwen2; `attention_bias` of a LLaMA config).
    public var attentionBias = false

    public var layerCount: Int { heads.count }

    /// The activation names the decoder knows.
    public static let activations = ["silu", "gelu_pytorch_tanh"]

    /// Whether layer `l` uses sliding-window attention.
    public func isSliding(_ l: Int) -> Bool { slidingWindow > 0 && l < slidingLayers.count && slidingLayers[l] }

    /// Softmax scale of the attention scores.
    public var attentionScale: Float { 1 / (queryPreAttentionScalar ?? Float(headDim)).squareRoot() }

    public init(
        architecture: String, vocabSize: Int, hiddenSize: Int, headDim: Int, heads: [Int], kvHeads: [Int],
        intermediateSizes: [Int], ropeTheta: Float, rmsNormEps: Float, contextLength: Int,
        tieWordEmbeddings: Bool
    ) {
        self.architecture = architecture
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.headDim = headDim
        self.heads = heads
        self.kvHeads = kvHeads
        self.intermediateSizes = intermediateSizes
        self.ropeTheta = ropeTheta
        self.rmsNormEps = rmsNormEps
        self.contextLength = contextLength
        self.tieWordEmbeddings = tieWordEmbeddings
    }

    enum CodingKeys: String, CodingKey {
        case architecture = "model_type"
        case architectures
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case headDim = "head_dim"
        case layers = "num_hidden_layers"
        case heads = "num_attention_heads"
        case kvHeads = "num_key_value_heads"
        case intermediateSizes = "intermediate_size"
        case ropeTheta = "rope_theta"
        case rmsNormEps = "rms_norm_eps"
        case contextLength = "max_position_embeddings"
        case tieWordEmbeddings = "tie_word_embeddings"
        case dtype = "torch_dtype"
        case activation = "hidden_activation"
        case embeddingScale = "embedding_scale"
        case queryKeyNorm = "query_key_norm"
        case postBlockNorms = "post_block_norms"
        case queryPreAttentionScalar = "query_pre_attn_scalar"
        case slidingWindow = "sliding_window"
        case layerTypes = "layer_types"
        case localRopeTheta = "rope_local_base_freq"
        case attentionBias = "attention_bias"
    }

    /// Hugging Face `config.json` layout. Per-layer sizes are written as a number when every layer
    /// agrees and as an array (one entry per layer) when they differ; both forms are read back.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(architecture, forKey: .architecture)
        if let family = Architectures.family(modelType: architecture) { try c.encode([family.hfClassName], forKey: .architectures) }
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(headDim, forKey: .headDim)
        try c.encode(layerCount, forKey: .layers)
        func perLayer(_ values: [Int], _ key: CodingKeys) throws {
            if let first = values.first, values.allSatisfy({ $0 == first }) {
                try c.encode(first, forKey: key)
            } else {
                try c.encode(values, forKey: key)
            }
        }
        try perLayer(heads, .heads)
        try perLayer(kvHeads, .kvHeads)
        try perLayer(intermediateSizes, .intermediateSizes)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(contextLength, forKey: .contextLength)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encode("float32", forKey: .dtype)
        // The variations are written only when they differ from LLaMA's, so a LLaMA config.json is unchanged.
        if activation != "silu" { try c.encode(activation, forKey: .activation) }
        if embeddingScale != 1 { try c.encode(embeddingScale, forKey: .embeddingScale) }
        if queryKeyNorm { try c.encode(true, forKey: .queryKeyNorm) }
        if postBlockNorms { try c.encode(true, forKey: .postBlockNorms) }
        try c.encodeIfPresent(queryPreAttentionScalar, forKey: .queryPreAttentionScalar)
        if slidingWindow > 0 {
            try c.encode(slidingWindow, forKey: .slidingWindow)
            try c.encode(slidingLayers.map { $0 ? "sliding_attention" : "full_attention" }, forKey: .layerTypes)
        }
        try c.encodeIfPresent(localRopeTheta, forKey: .localRopeTheta)
        if attentionBias { try c.encode(true, forKey: .attentionBias) }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        architecture = try c.decode(String.self, forKey: .architecture)
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        let layers = try c.decode(Int.self, forKey: .layers)
        guard (1...Self.maxLayers).contains(layers) else {
            throw DecodingError.dataCorruptedError(
                forKey: .layers, in: c, debugDescription: "\(layers) layers (1 to \(Self.maxLayers) allowed)")
        }
        func perLayer(_ key: CodingKeys) throws -> [Int] {
            if let v = try? c.decode(Int.self, forKey: key) { return Array(repeating: v, count: layers) }
            let values = try c.decode([Int].self, forKey: key)
            guard values.count == layers else {
                throw DecodingError.dataCorruptedError(
                    forKey: key, in: c,
                    debugDescription: "\(values.count) entries for \(layers) layers")
            }
            return values
        }
        heads = try perLayer(.heads)
        kvHeads = (try? perLayer(.kvHeads)) ?? heads
        intermediateSizes = try perLayer(.intermediateSizes)
        let maxHeads = heads.max() ?? 1
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? hiddenSize / max(maxHeads, 1)
        ropeTheta = try c.decodeIfPresent(Float.self, forKey: .ropeTheta) ?? 10_000
        rmsNormEps = try c.decodeIfPresent(Float.self, forKey: .rmsNormEps) ?? 1e-5
        contextLength = try c.decodeIfPresent(Int.self, forKey: .contextLength) ?? 2048
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        activation = try c.decodeIfPresent(String.self, forKey: .activation) ?? "silu"
        embeddingScale = try c.decodeIfPresent(Float.self, forKey: .embeddingScale) ?? 1
        queryKeyNorm = try c.decodeIfPresent(Bool.self, forKey: .queryKeyNorm) ?? false
        postBlockNorms = try c.decodeIfPresent(Bool.self, forKey: .postBlockNorms) ?? false
        queryPreAttentionScalar = try c.decodeIfPresent(Float.self, forKey: .queryPreAttentionScalar)
        slidingWindow = try c.decodeIfPresent(Int.self, forKey: .slidingWindow) ?? 0
        let types = try c.decodeIfPresent([String].self, forKey: .layerTypes) ?? []
        if let bad = types.first(where: { $0 != "sliding_attention" && $0 != "full_attention" }) {
            throw DecodingError.dataCorruptedError(
                forKey: .layerTypes, in: c,
                debugDescription: "unknown layer type '\(bad)' (sliding_attention or full_attention)")
        }
        slidingLayers = types.map { $0 == "sliding_attention" }
        localRopeTheta = try c.decodeIfPresent(Float.self, forKey: .localRopeTheta)
        attentionBias =
            try c.decodeIfPresent(Bool.self, forKey: .attentionBias)
            ?? Architectures.family(modelType: architecture)?.defaultAttentionBias ?? false
    }

    /// Upper bounds for sizes read from a file, far above any model Topiary runs (Llama 3 405B: 126 layers, hidden
    /// 16,384, FFN 53,248, vocabulary 128,256): a config that declares more is refused before anything is allocated.
    public static let maxLayers = 1024
    public static let maxHiddenSize = 1 << 17
    public static let maxHeads = 1 << 12
    public static let maxHeadDim = 1 << 12
    public static let maxIntermediateSize = 1 << 20
    public static let maxVocabSize = 1 << 22

    /// Checks internal consistency (per-layer arrays of one length, GQA divisibility) and the bounds above.
    public func validate() throws {
        let n = heads.count
        func fail(_ m: String) -> ModelError { .invalidConfig(m) }
        guard n > 0 else { throw fail("the model has no layers") }
        guard n <= Self.maxLayers else { throw fail("\(n) layers (at most \(Self.maxLayers))") }
        guard vocabSize <= Self.maxVocabSize, hiddenSize <= Self.maxHiddenSize, headDim <= Self.maxHeadDim else {
            throw fail(
                "vocab \(vocabSize), hidden \(hiddenSize), head dim \(headDim) exceed the limits (\(Self.maxVocabSize), "
                    + "\(Self.maxHiddenSize), \(Self.maxHeadDim))"
            )
        }
        guard heads.allSatisfy({ $0 <= Self.maxHeads }), kvHeads.allSatisfy({ $0 <= Self.maxHeads }),
            intermediateSizes.allSatisfy({ $0 <= Self.maxIntermediateSize })
        else {
            throw fail("a layer has more than \(Self.maxHeads) heads or \(Self.maxIntermediateSize) FFN channels")
        }
        guard kvHeads.count == n, intermediateSizes.count == n else {
            throw fail(
                "per-layer arrays differ in length (heads \(heads.count), kv heads \(kvHeads.count), ffn \(intermediateSizes.count))")
        }
        guard vocabSize > 0, hiddenSize > 0, headDim > 0, headDim % 2 == 0 else {
            throw fail("vocab \(vocabSize), hidden \(hiddenSize), head dim \(headDim) must be positive (head dim even)")
        }
        guard Self.activations.contains(activation) else {
            throw fail("unknown activation '\(activation)' (supported: \(Self.activations.joined(separator: ", ")))")
        }
        guard slidingLayers.isEmpty || slidingLayers.count == n else {
            throw fail("\(slidingLayers.count) layer types for \(n) layers")
        }
        guard slidingWindow >= 0 else { throw fail("negative sliding window \(slidingWindow)") }
        for l in 0..<n {
            guard heads[l] >= 0, kvHeads[l] >= 0, intermediateSizes[l] >= 0 else { throw fail("layer \(l) has a negative size") }
            if heads[l] > 0 {
                guard kvHeads[l] > 0, heads[l] % kvHeads[l] == 0 else {
                    throw fail("layer \(l): \(heads[l]) query heads are not a multiple of \(kvHeads[l]) KV heads")
                }
            }
        }
    }
}

extension ModelConfig {
    /// True when every layer has the same (non-zero) numbers of heads, KV heads and FFN channels.
    public var isUniform: Bool {
        Set(heads).count == 1 && Set(kvHeads).count == 1 && Set(intermediateSizes).count == 1 && heads[0] > 0 && intermediateSizes[0] > 0
    }

    /// A short description of the per-layer shapes, e.g. "heads 9 ×5, 6 ×25; KV heads 3 ×5, 2 ×25; FFN 1536 ×5, 1216 ×25".
    public var shapeSummary: String {
        func runs(_ values: [Int]) -> String {
            var counts: [(Int, Int)] = []
            for v in values {
                if let i = counts.firstIndex(where: { $0.0 == v }) { counts[i].1 += 1 } else { counts.append((v, 1)) }
            }
            return counts.count == 1 ? "\(values[0]) in every layer" : counts.map { "\($0.0) ×\($0.1)" }.joined(separator: ", ")
        }
        return "heads \(runs(heads)); KV heads \(runs(kvHeads)); FFN \(runs(intermediateSizes))"
    }
}

/// Errors of model loading and construction.
public enum ModelError: Error, LocalizedError, Equatable {
    case invalidConfig(String)
    case unsupportedArchitecture(path: String, architecture: String)
    /// A transformers `config.json` whose `model_type` no family reads.
    case unsupportedModelType(path: String, modelType: String)
    case missingMetadata(path: String, key: String)
    case missingTensor(path: String, name: String)
    case tensorShape(path: String, name: String, expected: [Int], found: [Int])
    case notFound(path: String)
    case unrecognizedFormat(path: String)
    /// A checkpoint folder that is missing, incomplete or damaged: the message names the file and the problem.
    case checkpoint(String)

    public var errorDescription: String? {
        switch self {
        case let .invalidConfig(m): return "invalid model configuration: \(m)"
        case let .unsupportedArchitecture(path, a):
            return "\(path): unsupported architecture '\(a)' (supported: \(Architectures.supportedNames.joined(separator: ", ")))"
        case let .unsupportedModelType(path, t):
            return
                "\(path): unsupported model_type '\(t)' (supported: \(Architectures.all.flatMap(\.hfModelTypes).joined(separator: ", ")))"
        case let .missingMetadata(path, key): return "\(path): missing metadata key '\(key)'"
        case let .missingTensor(path, name): return "\(path): missing tensor '\(name)'"
        case let .tensorShape(path, name, e, f): return "\(path): tensor '\(name)' has shape \(f), expected \(e)"
        case let .notFound(path): return "\(path): no such file or directory"
        case let .unrecognizedFormat(path):
            return "\(path): not a GGUF file, a Topiary checkpoint directory (config.json, model.safetensors, "
                + "tokenizer_metadata.json and manifest.json) or a Hugging Face model directory (config.json, model.safetensors or "
                + "model.safetensors.index.json with its shards, tokenizer.json)"
        case let .checkpoint(m): return m
        }
    }
}
