import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// The weights an export writes: the model's own, with any unmerged LoRA adapters folded in.
enum ExportWeights {
    /// A plain ``DecoderModel`` with the weights to write, and how many adapters were merged (the input
    /// model is left unchanged; with adapters the result holds merged copies).
    static func plain(_ model: DecoderModel) throws -> (DecoderModel, Int) {
        guard !model.adapters.isEmpty else { return (model, 0) }
        var weights: [String: Tensor] = [:]
        for p in model.parameters {
            if let adapter = model.adapters[p.name] {
                let merged = Parameter(name: p.name, value: p.value.copy())
                adapter.merge(into: merged)
                weights[p.name] = merged.value
            } else {
                weights[p.name] = p.value
            }
        }
        return (try DecoderModel(config: model.config, weights: weights, source: "merged adapters"), model.adapters.count)
    }

    /// Fraction of exactly-zero entries in the layers' linear weights (nil when there are none).
    static func zeroFraction(_ model: DecoderModel) -> Double? {
        var zeros = 0, total = 0
        for layer in model.layers {
            for p in [layer.q, layer.k, layer.v, layer.o, layer.gate, layer.up, layer.down] {
                let t = p.value
                total += t.count
                for i in 0..<t.count where t.pointer[i] == 0 { zeros += 1 }
            }
        }
        return total > 0 ? Double(zeros) / Double(total) : nil
    }
}
