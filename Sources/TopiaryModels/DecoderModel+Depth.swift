import Foundation
import TopiaryAutodiff
import TopiaryCore

/// Depth: whole decoder blocks taken out of a model (ShortGPT, Shortened LLaMA). The kept blocks are renumbered so the
/// model saves, reloads and exports as an ordinary model with fewer layers; each keeps its own sizes and its own
/// attention type (a Gemma 3 local layer stays local wherever it ends up).
extension ModelConfig {
    /// This configuration without the layers in `removed` (per-layer sizes and attention types of the others kept).
    public func removingLayers(_ removed: Set<Int>) throws -> ModelConfig {
        if let bad = removed.first(where: { !(0..<layerCount).contains($0) }) {
            throw ModelError.invalidConfig("layer \(bad) does not exist (the model has layers 0-\(layerCount - 1))")
        }
        guard removed.count < layerCount else {
            throw ModelError.invalidConfig("removing \(removed.count) of \(layerCount) layers would leave none")
        }
        let kept = (0..<layerCount).filter { !removed.contains($0) }
        var c = self
        c.heads = kept.map { heads[$0] }
        c.kvHeads = kept.map { kvHeads[$0] }
        c.intermediateSizes = kept.map { intermediateSizes[$0] }
        if !slidingLayers.isEmpty { c.slidingLayers = kept.map { isSliding($0) } }
        try c.validate()
        return c
    }
}

extension DecoderModel {
    /// A model that runs the same weights without the layers in `removed` (shares every tensor; nothing is copied).
    /// Its parameters keep their original names: it is for measuring (a block's perplexity criterion), not for saving.
    public func skippingLayers(_ removed: Set<Int>) throws -> DecoderModel {
        let c = try config.removingLayers(removed)
        let kept = layers.indices.filter { !removed.contains($0) }.map { layers[$0] }
        return try DecoderModel(config: c, embedding: embedding, layers: kept, norm: norm, output: output)
    }

    /// Removes the layers in `removed` in place and renumbers the rest (`model.layers.5.…` becomes `model.layers.4.…`
    /// when layer 4 goes), so that checkpoints, GGUF and safetensors exports name them as a model of that depth.
    public func removeLayers(_ removed: Set<Int>) throws {
        guard !removed.isEmpty else { return }
        guard store == nil else {
            throw ModelError.invalidConfig("whole blocks cannot be removed from a streamed model (--stream-layers): load it whole")
        }
        guard adapters.isEmpty else {
            throw ModelError.invalidConfig("whole blocks cannot be removed while LoRA adapters are attached: merge them first")
        }
        let c = try config.removingLayers(removed)
        let kept = layers.indices.filter { !removed.contains($0) }
        layers = kept.enumerated().map { newIndex, old in Self.renamed(layers[old], to: newIndex, config: c) }
        try replaceConfig(c)
    }

    /// `layer`'s weights under the names of layer `index` (same tensors, new ``Parameter`` objects).
    static func renamed(_ layer: DecoderLayer, to index: Int, config: ModelConfig) -> DecoderLayer {
        let n = parameterNames(layer: index, config: config)
        func p(_ old: Parameter, _ name: String) -> Parameter {
            let p = Parameter(name: name, value: old.value, requiresGrad: old.requiresGrad)
            p.grad = old.grad
            return p
        }
        var r = DecoderLayer(
            attentionNorm: p(layer.attentionNorm, n.attentionNorm), q: p(layer.q, n.q), k: p(layer.k, n.k), v: p(layer.v, n.v),
            o: p(layer.o, n.o), ffnNorm: p(layer.ffnNorm, n.ffnNorm), gate: p(layer.gate, n.gate), up: p(layer.up, n.up),
            down: p(layer.down, n.down))
        r.qNorm = layer.qNorm.map { p($0, n.qNorm) }
        r.kNorm = layer.kNorm.map { p($0, n.kNorm) }
        r.postAttentionNorm = layer.postAttentionNorm.map { p($0, n.postAttentionNorm) }
        r.postFFNNorm = layer.postFFNNorm.map { p($0, n.postFFNNorm) }
        r.qBias = layer.qBias.map { p($0, n.qBias) }
        r.kBias = layer.kBias.map { p($0, n.kBias) }
        r.vBias = layer.vBias.map { p($0, n.vBias) }
        return r
    }
}
