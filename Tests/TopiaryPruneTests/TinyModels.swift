import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// Deterministic random tensors for tests.
func randomTensor(_ shape: [Int], _ rng: inout SplitMix64, scale: Float = 0.5) -> Tensor {
    Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in rng.nextFloat(-scale, scale) })
}

/// A small random LLaMA (GQA, SwiGLU, RMSNorm, tied or untied head) for graph and pruning tests.
func tinyLlama(
    layers: Int = 2, hidden: Int = 16, heads: Int = 4, kvHeads: Int = 2, headDim: Int = 4, ffn: Int = 12,
    vocab: Int = 23, tied: Bool = true, seed: UInt64 = 1
) throws -> DecoderModel {
    var rng = SplitMix64(seed: seed)
    let config = ModelConfig(
        architecture: "llama", vocabSize: vocab, hiddenSize: hidden, headDim: headDim,
        heads: Array(repeating: heads, count: layers), kvHeads: Array(repeating: kvHeads, count: layers),
        intermediateSizes: Array(repeating: ffn, count: layers), ropeTheta: 10_000, rmsNormEps: 1e-5,
        contextLength: 64, tieWordEmbeddings: tied)
    var weights: [String: Tensor] = [
        "model.embed_tokens.weight": randomTensor([vocab, hidden], &rng),
        "model.norm.weight": randomTensor([hidden], &rng, scale: 1),
    ]
    if !tied { weights["lm_head.weight"] = randomTensor([vocab, hidden], &rng) }
    for l in 0..<layers {
        let n = DecoderModel.parameterNames(layer: l)
        let shapes = [
            [hidden], [heads * headDim, hidden], [kvHeads * headDim, hidden], [kvHeads * headDim, hidden],
            [hidden, heads * headDim], [hidden], [ffn, hidden], [ffn, hidden], [hidden, ffn],
        ]
        for (name, shape) in zip(n, shapes) { weights[name] = randomTensor(shape, &rng, scale: shape.count == 1 ? 1 : 0.5) }
    }
    return try DecoderModel(config: config, weights: weights)
}

/// A GPT-2-style model written only with the generic graph ops: LayerNorm with bias, biased linears,
/// plain multi-head attention (no GQA), a GELU MLP without gate, an untied output head. It exists to
/// prove that the dependency graph is discovered from the trace, not from tables about LLaMA.
final class TinyGPT: LanguageModel, @unchecked Sendable {
    var config: ModelConfig
    var params: [String: Parameter] = [:]
    let layerCount: Int
    let rotary: RotaryTable

    init(layers: Int = 2, hidden: Int = 12, heads: Int = 3, headDim: Int = 4, ffn: Int = 10, vocab: Int = 19, seed: UInt64 = 3) {
        var rng = SplitMix64(seed: seed)
        layerCount = layers
        config = ModelConfig(
            architecture: "tinygpt", vocabSize: vocab, hiddenSize: hidden, headDim: headDim,
            heads: Array(repeating: heads, count: layers), kvHeads: Array(repeating: heads, count: layers),
            intermediateSizes: Array(repeating: ffn, count: layers), ropeTheta: 10_000, rmsNormEps: 1e-5,
            contextLength: 64, tieWordEmbeddings: false)
        rotary = RotaryTable(base: 10_000, rotaryDim: headDim, maxPositions: 64)
        func add(_ name: String, _ shape: [Int], _ scale: Float = 0.5) {
            params[name] = Parameter(name: name, value: randomTensor(shape, &rng, scale: scale))
        }
        add("wte", [vocab, hidden])
        for l in 0..<layers {
            let p = "h.\(l)."
            add(p + "ln1.weight", [hidden], 1); add(p + "ln1.bias", [hidden], 0.1)
            add(p + "attn.q.weight", [heads * headDim, hidden]); add(p + "attn.q.bias", [heads * headDim], 0.1)
            add(p + "attn.k.weight", [heads * headDim, hidden]); add(p + "attn.k.bias", [heads * headDim], 0.1)
            add(p + "attn.v.weight", [heads * headDim, hidden]); add(p + "attn.v.bias", [heads * headDim], 0.1)
            add(p + "attn.proj.weight", [hidden, heads * headDim]); add(p + "attn.proj.bias", [hidden], 0.1)
            add(p + "ln2.weight", [hidden], 1); add(p + "ln2.bias", [hidden], 0.1)
            add(p + "mlp.fc.weight", [ffn, hidden]); add(p + "mlp.fc.bias", [ffn], 0.1)
            add(p + "mlp.proj.weight", [hidden, ffn]); add(p + "mlp.proj.bias", [hidden], 0.1)
        }
        add("ln_f.weight", [hidden], 1); add("ln_f.bias", [hidden], 0.1)
        add("lm_head.weight", [vocab, hidden])
    }

    var parameters: [Parameter] { params.keys.sorted().map { params[$0]! } }

    func refreshConfig() throws {
        config.hiddenSize = params["wte"]!.shape[1]
        config.heads = (0..<layerCount).map { params["h.\($0).attn.q.weight"]!.shape[0] / config.headDim }
        config.kvHeads = config.heads
        config.intermediateSizes = (0..<layerCount).map { params["h.\($0).mlp.fc.weight"]!.shape[0] }
    }

    func makeCache(batch: Int, capacity: Int) -> KVCache {
        KVCache(batch: batch, capacity: capacity, kvWidths: config.heads.map { $0 * config.headDim })
    }

    func forward(_ g: Graph, tokens: [Int32], batch: Int, cache: KVCache?, logits: LogitsMode) throws -> Var {
        let T = tokens.count / batch
        func p(_ n: String) -> Var { g.parameter(params[n]!) }
        func linear(_ x: Var, _ n: String) throws -> Var { try g.addBias(g.linear(x, p(n + ".weight")), p(n + ".bias")) }
        let positions = (0..<batch).flatMap { _ in (0..<T).map(Int32.init) }
        var h = try g.embedding(p("wte"), ids: tokens)
        for l in 0..<layerCount {
            let pre = "h.\(l)."
            let heads = config.heads[l], hd = config.headDim
            let x = try g.layerNorm(h, p(pre + "ln1.weight"), p(pre + "ln1.bias"), eps: 1e-5)
            let q = try g.rope(linear(x, pre + "attn.q"), heads: heads, headDim: hd, positions: positions, table: rotary)
            let k = try g.rope(linear(x, pre + "attn.k"), heads: heads, headDim: hd, positions: positions, table: rotary)
            let v = try linear(x, pre + "attn.v")
            let a = try g.attention(
                q, k, v,
                shape: AttentionShape(
                    batch: batch, queryLength: T, keyLength: T, heads: heads,
                    kvHeads: heads, headDim: hd))
            h = try g.add(h, linear(a, pre + "attn.proj"))
            let x2 = try g.layerNorm(h, p(pre + "ln2.weight"), p(pre + "ln2.bias"), eps: 1e-5)
            h = try g.add(h, linear(g.geluErf(linear(x2, pre + "mlp.fc")), pre + "mlp.proj"))
        }
        h = try g.layerNorm(h, p("ln_f.weight"), p("ln_f.bias"), eps: 1e-5)
        return try g.linear(h, p("lm_head.weight"))
    }
}

/// A small random Gemma 3 (the same decoder configured: √hidden embedding scale, per-head q/k norms, norms
/// after attention and FFN, GeGLU, local and global layers with their own RoPE bases).
func tinyGemma(
    layers: Int = 3, hidden: Int = 16, heads: Int = 4, kvHeads: Int = 1, headDim: Int = 8, ffn: Int = 12,
    vocab: Int = 23, seed: UInt64 = 7
) throws -> DecoderModel {
    var rng = SplitMix64(seed: seed)
    var config = ModelConfig(
        architecture: "gemma3", vocabSize: vocab, hiddenSize: hidden, headDim: headDim,
        heads: Array(repeating: heads, count: layers), kvHeads: Array(repeating: kvHeads, count: layers),
        intermediateSizes: Array(repeating: ffn, count: layers), ropeTheta: 1_000_000, rmsNormEps: 1e-6,
        contextLength: 64, tieWordEmbeddings: true)
    config.activation = "gelu_pytorch_tanh"
    config.embeddingScale = Float(hidden).squareRoot()
    config.queryKeyNorm = true
    config.postBlockNorms = true
    config.queryPreAttentionScalar = Float(headDim)
    config.slidingWindow = 3
    config.slidingLayers = (0..<layers).map { ($0 + 1) % 3 != 0 }
    config.localRopeTheta = 10_000
    var weights: [String: Tensor] = [
        "model.embed_tokens.weight": randomTensor([vocab, hidden], &rng),
        "model.norm.weight": randomTensor([hidden], &rng, scale: 1),
    ]
    for l in 0..<layers {
        let n = DecoderModel.parameterNames(layer: l, config: config)
        let shapes: [(String, [Int])] = [
            (n.attentionNorm, [hidden]), (n.q, [heads * headDim, hidden]), (n.k, [kvHeads * headDim, hidden]),
            (n.v, [kvHeads * headDim, hidden]), (n.o, [hidden, heads * headDim]), (n.qNorm, [headDim]), (n.kNorm, [headDim]),
            (n.postAttentionNorm, [hidden]), (n.ffnNorm, [hidden]), (n.gate, [ffn, hidden]), (n.up, [ffn, hidden]),
            (n.down, [hidden, ffn]), (n.postFFNNorm, [hidden]),
        ]
        for (name, shape) in shapes { weights[name] = randomTensor(shape, &rng, scale: shape.count == 1 ? 1 : 0.5) }
    }
    return try DecoderModel(config: config, weights: weights)
}
