import Foundation
import TopiaryAutodiff
import TopiaryCore

/// Which positions get logits.
public enum LogitsMode: Sendable, Equatable {
    /// Every position (perplexity, training).
    case all
    /// Only the last position of each sequence (generation).
    case last
    /// Only these rows of the flattened `[batch·length]` positions, in this order (scoring chosen
    /// continuations without paying the output projection for the rest).
    case rows([Int])
}

/// A causal language model that Topiary can run, differentiate, prune and save.
public protocol LanguageModel: AnyObject, Sendable {
    var config: ModelConfig { get }
    /// Every parameter, in a stable order, each under its Hugging Face name. Tied weights appear once.
    var parameters: [Parameter] { get }
    /// Runs the model over `tokens` (`batch` sequences of equal length, row-major) and returns logits
    /// `[rows, vocab]`. With a cache, positions continue after what the cache holds.
    func forward(_ g: Graph, tokens: [Int32], batch: Int, cache: KVCache?, logits: LogitsMode) throws -> Var
    /// An empty KV cache sized for this model.
    func makeCache(batch: Int, capacity: Int) -> KVCache
    /// Re-reads the per-layer sizes from the weights after they were sliced (pruning) and checks them.
    func refreshConfig() throws
}

extension LanguageModel {
    /// Parameter count (tied weights once).
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    public func parameter(named name: String) -> Parameter? { parameters.first { $0.name == name } }

    public func forward(_ g: Graph, tokens: [Int32], batch: Int = 1) throws -> Var {
        try forward(g, tokens: tokens, batch: batch, cache: nil, logits: .all)
    }
}

/// The weights of one decoder layer. Its sizes are read from the weights' shapes. The optional norms are
/// those of Gemma 3 (``ModelConfig/queryKeyNorm``, ``ModelConfig/postBlockNorms``).
public struct DecoderLayer: Sendable {
    public var attentionNorm: Parameter
    public var q: Parameter
    public var k: Parameter
    public var v: Parameter
    public var o: Parameter
    /// The norm before the FFN (LLaMA's `post_attention_layernorm`, Gemma's `pre_feedforward_layernorm`).
    public var ffnNorm: Parameter
    public var gate: Parameter
    public var up: Parameter
    public var down: Parameter
    /// Per-head query and key norms, `[headDim]` each.
    public var qNorm: Parameter? = nil
    public var kNorm: Parameter? = nil
    /// Norms of the attention and FFN outputs (Gemma's `post_attention_layernorm`, `post_feedforward_layernorm`).
    public var postAttentionNorm: Parameter? = nil
    public var postFFNNorm: Parameter? = nil
    /// Query, key and value biases (Qwen2, ``ModelConfig/attentionBias``), `[heads·headDim]`, `[kvHeads·headDim]` ×2.
    public var qBias: Parameter? = nil
    public var kBias: Parameter? = nil
    public var vBias: Parameter? = nil

    public var all: [Parameter] {
        [attentionNorm, q] + [qBias].compactMap { $0 } + [k] + [kBias].compactMap { $0 } + [v] + [vBias].compactMap { $0 }
            + [o] + [qNorm, kNorm, postAttentionNorm].compactMap { $0 } + [ffnNorm, gate, up, down]
            + [postFFNNorm].compactMap { $0 }
    }
}

/// The LLaMA architecture (SmolLM2, LLaMA 2/3, Mistral-style GQA): pre-norm RMSNorm, rotary
/// attention with grouped KV heads, SwiGLU MLP, optional tied output embedding — and, configured by
/// ``ModelConfig``'s variations, Gemma 3: embeddings scaled by √hidden, per-head q/k RMSNorm, norms after
/// attention and FFN, GeGLU (GELU-tanh) MLP, attention scale from `query_pre_attn_scalar`, and local
/// (sliding-window) layers with their own RoPE base interleaved with global ones.
///
/// One definition serves inference (a non-recording ``Graph``, optional KV cache) and training or
/// tracing (a recording graph).
public final class DecoderModel: AdaptableModel, @unchecked Sendable {
    public private(set) var config: ModelConfig
    public let embedding: Parameter
    public var layers: [DecoderLayer]
    public let norm: Parameter
    /// The output projection; the same object as ``embedding`` when tied.
    public let output: Parameter
    /// LoRA adapters by the name of the weight they adapt (empty for a plain model).
    public var adapters: [String: LoRAAdapter] = [:]
    /// For a streamed model: where the weights stay (memory-mapped, quantized) until a layer is used.
    public var store: LayerStore?
    private var rotary: RotaryTable
    /// The RoPE table of local layers when their base differs (Gemma 3).
    private var localRotary: RotaryTable?
    private let rotaryLock = NSLock()

    public init(config: ModelConfig, embedding: Parameter, layers: [DecoderLayer], norm: Parameter, output: Parameter) throws {
        try config.validate()
        self.config = config
        self.embedding = embedding
        self.layers = layers
        self.norm = norm
        self.output = output
        let positions = min(config.contextLength, 2048)
        rotary = RotaryTable(base: config.ropeTheta, rotaryDim: config.headDim, maxPositions: positions)
        localRotary = config.localRopeTheta.map { RotaryTable(base: $0, rotaryDim: config.headDim, maxPositions: positions) }
        try checkShapes()
    }

    /// Builds the model from weights named as Hugging Face names them (a checkpoint).
    public convenience init(config: ModelConfig, weights: [String: Tensor], source: String = "checkpoint") throws {
        func p(_ name: String) throws -> Parameter {
            guard let t = weights[name] else { throw ModelError.missingTensor(path: source, name: name) }
            return Parameter(name: name, value: t)
        }
        let embedding = try p("model.embed_tokens.weight")
        let layers = try (0..<config.layerCount).map { l -> DecoderLayer in
            let n = Self.parameterNames(layer: l, config: config)
            var layer = DecoderLayer(
                attentionNorm: try p(n.attentionNorm), q: try p(n.q), k: try p(n.k), v: try p(n.v),
                o: try p(n.o), ffnNorm: try p(n.ffnNorm), gate: try p(n.gate), up: try p(n.up),
                down: try p(n.down))
            if config.queryKeyNorm { layer.qNorm = try p(n.qNorm); layer.kNorm = try p(n.kNorm) }
            if config.postBlockNorms {
                layer.postAttentionNorm = try p(n.postAttentionNorm)
                layer.postFFNNorm = try p(n.postFFNNorm)
            }
            if config.attentionBias { layer.qBias = try p(n.qBias); layer.kBias = try p(n.kBias); layer.vBias = try p(n.vBias) }
            return layer
        }
        let output = config.tieWordEmbeddings ? embedding : try p("lm_head.weight")
        do {
            try self.init(config: config, embedding: embedding, layers: layers, norm: try p("model.norm.weight"), output: output)
        } catch let ModelError.tensorShape(_, name, expected, found) {
            throw ModelError.tensorShape(path: source, name: name, expected: expected, found: found)
        }
    }

    public static func parameterNames(layer i: Int) -> [String] {
        let p = "model.layers.\(i)."
        return [
            p + "input_layernorm.weight", p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
            p + "self_attn.v_proj.weight", p + "self_attn.o_proj.weight", p + "post_attention_layernorm.weight",
            p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight", p + "mlp.down_proj.weight",
        ]
    }

    /// Hugging Face names of one layer's weights for a configuration (Gemma 3 names its norms differently:
    /// its `post_attention_layernorm` is the norm after attention, not the one before the FFN).
    public struct LayerNames: Sendable {
        public var attentionNorm, q, k, v, o, ffnNorm, gate, up, down: String
        public var qNorm, kNorm, postAttentionNorm, postFFNNorm: String
        public var qBias, kBias, vBias: String
    }

    public static func parameterNames(layer i: Int, config: ModelConfig) -> LayerNames {
        let n = parameterNames(layer: i), p = "model.layers.\(i)."
        return LayerNames(
            attentionNorm: n[0], q: n[1], k: n[2], v: n[3], o: n[4],
            ffnNorm: config.postBlockNorms ? p + "pre_feedforward_layernorm.weight" : n[5], gate: n[6], up: n[7], down: n[8],
            qNorm: p + "self_attn.q_norm.weight", kNorm: p + "self_attn.k_norm.weight",
            postAttentionNorm: p + "post_attention_layernorm.weight", postFFNNorm: p + "post_feedforward_layernorm.weight",
            qBias: p + "self_attn.q_proj.bias", kBias: p + "self_attn.k_proj.bias", vBias: p + "self_attn.v_proj.bias")
    }

    public var parameters: [Parameter] {
        var all = [embedding]
        for layer in layers { all += layer.all }
        all.append(norm)
        if output !== embedding { all.append(output) }
        return all
    }

    /// Re-reads per-layer sizes from the weights (after pruning changed them) and checks them.
    public func refreshConfig() throws {
        var c = config
        c.hiddenSize = embedding.shape[1]
        c.heads = layers.map { $0.q.shape[0] / c.headDim }
        c.kvHeads = layers.map { $0.k.shape[0] / c.headDim }
        c.intermediateSizes = layers.map { $0.gate.shape[0] }
        try c.validate()
        config = c
        try checkShapes()
    }

    /// Takes a configuration whose layers match ``layers`` (after blocks were removed) and checks the shapes.
    func replaceConfig(_ c: ModelConfig) throws {
        let old = config
        config = c
        do { try checkShapes() } catch {
            config = old
            throw error
        }
    }

    private func checkShapes() throws {
        let d = config.hiddenSize, hd = config.headDim
        func expect(_ p: Parameter, _ shape: [Int]) throws {
            guard p.shape == shape else { throw ModelError.tensorShape(path: "model", name: p.name, expected: shape, found: p.shape) }
        }
        try expect(embedding, [config.vocabSize, d])
        try expect(output, [config.vocabSize, d])
        try expect(norm, [d])
        guard layers.count == config.layerCount else {
            throw ModelError.invalidConfig("\(layers.count) layers of weights for \(config.layerCount) configured")
        }
        for (l, layer) in layers.enumerated() {
            let nq = config.heads[l] * hd, nkv = config.kvHeads[l] * hd, f = config.intermediateSizes[l]
            try expect(layer.attentionNorm, [d])
            try expect(layer.q, [nq, d])
            try expect(layer.k, [nkv, d])
            try expect(layer.v, [nkv, d])
            try expect(layer.o, [d, nq])
            try expect(layer.ffnNorm, [d])
            try expect(layer.gate, [f, d])
            try expect(layer.up, [f, d])
            try expect(layer.down, [d, f])
            if config.queryKeyNorm {
                guard let qn = layer.qNorm, let kn = layer.kNorm else {
                    throw ModelError.invalidConfig("layer \(l): the configuration asks for q/k norms and the weights have none")
                }
                try expect(qn, [hd])
                try expect(kn, [hd])
            }
            if config.postBlockNorms {
                guard let pa = layer.postAttentionNorm, let pf = layer.postFFNNorm else {
                    throw ModelError.invalidConfig(
                        "layer \(l): the configuration asks for post-attention/FFN norms and the weights have none")
                }
                try expect(pa, [d])
                try expect(pf, [d])
            }
            if config.attentionBias {
                guard let qb = layer.qBias, let kb = layer.kBias, let vb = layer.vBias else {
                    throw ModelError.invalidConfig("layer \(l): the configuration asks for q/k/v biases and the weights have none")
                }
                try expect(qb, [nq])
                try expect(kb, [nkv])
                try expect(vb, [nkv])
            }
        }
    }

    public func makeCache(batch: Int, capacity: Int) -> KVCache {
        KVCache(batch: batch, capacity: capacity, kvWidths: config.kvHeads.map { $0 * config.headDim })
    }

    /// The global and (when local layers have their own base) local RoPE tables.
    func rotaryTables(covering positions: Int) -> (RotaryTable, RotaryTable?) {
        rotaryLock.lock()
        defer { rotaryLock.unlock() }
        if positions > rotary.maxPositions {
            var size = rotary.maxPositions
            while size < positions { size *= 2 }
            rotary = RotaryTable(base: config.ropeTheta, rotaryDim: config.headDim, maxPositions: size)
            localRotary = config.localRopeTheta.map { RotaryTable(base: $0, rotaryDim: config.headDim, maxPositions: size) }
        }
        return (rotary, localRotary)
    }

    public func forward(_ g: Graph, tokens: [Int32], batch: Int, cache: KVCache?, logits mode: LogitsMode) throws -> Var {
        guard batch > 0, !tokens.isEmpty, tokens.count % batch == 0 else {
            throw ModelError.invalidConfig("\(tokens.count) tokens do not split into \(batch) sequences of equal length")
        }
        if let cache, cache.batch != batch {
            throw ModelError.invalidConfig("the KV cache was made for batch \(cache.batch), not \(batch)")
        }
        let steps = try LayerSteps(model: self, batch: batch, length: tokens.count / batch, start: cache?.length ?? 0)
        var h = try embed(g, tokens: tokens)
        for l in layers.indices { h = try layer(g, l, h, steps: steps, cache: cache) }
        return try head(g, h, steps: steps, logits: mode)
    }

    /// Positions and rotary table of one call, shared by its layers.
    public struct LayerSteps {
        public let batch: Int
        public let length: Int
        let positions: [Int32]
        let table: RotaryTable
        let localTable: RotaryTable?

        public init(model: DecoderModel, batch: Int, length: Int, start: Int = 0) throws {
            self.batch = batch
            self.length = length
            positions = (0..<batch).flatMap { _ in (0..<length).map { Int32(start + $0) } }
            let tables = model.rotaryTables(covering: start + length)
            table = tables.0
            localTable = tables.1
        }
    }

    /// The token embeddings, `[tokens, hidden]`.
    public func embed(_ g: Graph, tokens: [Int32]) throws -> Var {
        // A streamed model gathers the rows it needs from the file instead of loading the whole table.
        let e =
            try embedding.isResident || store == nil
            ? g.embedding(g.parameter(embedding), ids: tokens)
            : g.embedding(rows: store!.embeddingRows(embedding, ids: tokens), of: embedding, ids: tokens)
        return config.embeddingScale == 1 ? e : g.scale(e, config.embeddingScale)
    }

    /// Decoder layer `l` on the residual stream `h` (a layer with no heads or no FFN channels left skips
    /// that block). Layer-by-layer drivers (Wanda, SparseGPT) call this directly.
    public func layer(_ g: Graph, _ l: Int, _ input: Var, steps: LayerSteps, cache: KVCache? = nil) throws -> Var {
        try store?.use(layer: l)
        let layer = layers[l]
        let hd = config.headDim, eps = config.rmsNormEps
        let nh = config.heads[l], nkv = config.kvHeads[l]
        var h = input
        if nh > 0 {
            let x = try g.rmsNorm(h, g.parameter(layer.attentionNorm), eps: eps)
            var q = try g.linear(x, layer.q, adapter: adapters[layer.q.name])
            var k = try g.linear(x, layer.k, adapter: adapters[layer.k.name])
            var v = try g.linear(x, layer.v, adapter: adapters[layer.v.name])
            if let qb = layer.qBias, let kb = layer.kBias, let vb = layer.vBias {
                q = try g.addBias(q, g.parameter(qb))
                k = try g.addBias(k, g.parameter(kb))
                v = try g.addBias(v, g.parameter(vb))
            }
            if let qn = layer.qNorm, let kn = layer.kNorm {
                q = try g.groupedRMSNorm(q, g.parameter(qn), groupSize: hd, eps: eps)
                k = try g.groupedRMSNorm(k, g.parameter(kn), groupSize: hd, eps: eps)
            }
            let sliding = config.isSliding(l)
            let table = sliding ? steps.localTable ?? steps.table : steps.table
            let window = sliding ? config.slidingWindow : 0
            q = try g.rope(q, heads: nh, headDim: hd, positions: steps.positions, table: table)
            k = try g.rope(k, heads: nkv, headDim: hd, positions: steps.positions, table: table)
            var a: Var
            if let cache {
                a = try g.attention(
                    q, k, v, cache: cache, layer: l, heads: nh, kvHeads: nkv, headDim: hd,
                    scale: config.attentionScale, window: window)
            } else {
                a = try g.attention(
                    q, k, v,
                    shape: AttentionShape(
                        batch: steps.batch, queryLength: steps.length,
                        keyLength: steps.length, heads: nh, kvHeads: nkv, headDim: hd,
                        scale: config.attentionScale, window: window))
            }
            a = try g.linear(a, layer.o, adapter: adapters[layer.o.name])
            if let pn = layer.postAttentionNorm { a = try g.rmsNorm(a, g.parameter(pn), eps: eps) }
            h = try g.add(h, a)
        }
        if config.intermediateSizes[l] > 0 {
            let x = try g.rmsNorm(h, g.parameter(layer.ffnNorm), eps: eps)
            let gateLinear = try g.linear(x, layer.gate, adapter: adapters[layer.gate.name])
            let gate = config.activation == "gelu_pytorch_tanh" ? g.geluTanh(gateLinear) : g.silu(gateLinear)
            let up = try g.linear(x, layer.up, adapter: adapters[layer.up.name])
            var m = try g.linear(g.mul(gate, up), layer.down, adapter: adapters[layer.down.name])
            if let pn = layer.postFFNNorm { m = try g.rmsNorm(m, g.parameter(pn), eps: eps) }
            h = try g.add(h, m)
        }
        return h
    }

    /// Final norm and output projection.
    public func head(_ g: Graph, _ input: Var, steps: LayerSteps, logits mode: LogitsMode) throws -> Var {
        if let store { try store.useHead() }
        var h = try g.rmsNorm(input, g.parameter(norm), eps: config.rmsNormEps)
        switch mode {
        case .last where steps.length > 1:
            h = try g.reshape(
                g.slice(
                    g.reshape(h, [steps.batch, steps.length, config.hiddenSize]), axis: 1,
                    (steps.length - 1)..<steps.length), [steps.batch, config.hiddenSize])
        case .rows(let rows):
            let count = steps.batch * steps.length
            guard let bad = rows.first(where: { $0 < 0 || $0 >= count }) else {
                h = try g.embedding(h, ids: rows.map { Int32($0) })  // a row gather
                break
            }
            throw ModelError.invalidConfig("logits requested for row \(bad) of \(count) positions")
        default:
            break
        }
        return try g.linear(h, g.parameter(output))
    }
}
