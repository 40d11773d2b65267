import CTopiaryKernels
import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels

/// Calibration windows: `windows` consecutive runs of `length` tokens starting at token `offset` of a
/// tokenized text (choose an offset past the evaluation windows so the two never overlap).
public struct CalibrationSet: Sendable {
    public let tokens: [Int32]
    public let windows: Int
    public let length: Int
    public let offset: Int
    /// The text the windows come from.
    public let source: String

    public init(tokens all: [Int32], windows: Int, length: Int, offset: Int, source: String = "text") throws {
        guard windows >= 1 else { throw PruneError.calibration("--calibration-windows must be at least 1") }
        guard length >= 2 else { throw PruneError.calibration("--calibration-length must be at least 2") }
        guard offset >= 0 else { throw PruneError.calibration("--calibration-offset must be ≥ 0") }
        let end = offset + windows * length
        guard end <= all.count else {
            throw PruneError.calibration(
                "\(source): \(windows) windows × \(length) tokens from token \(offset) need \(end) tokens; the text has \(all.count)")
        }
        tokens = Array(all[offset..<end])
        self.windows = windows
        self.length = length
        self.offset = offset
        self.source = source
    }

    /// Windows, length and offset, as run records report them.
    public var summary: [String: Int] { ["windows": windows, "length": length, "offset": offset] }

    /// The windows in consecutive runs of at most `perPass` windows, one forward pass each.
    public func chunks(perPass: Int) -> [(tokens: [Int32], windows: Int)] {
        let perPass = max(1, min(perPass, windows))
        return stride(from: 0, to: windows, by: perPass).map { w in
            let n = min(perPass, windows - w)
            return (Array(tokens[(w * length)..<((w + n) * length)]), n)
        }
    }

    /// Hugging Face causal-LM targets: token t+1 for position t, ignored (-100) at each window's end.
    func targets(for ids: ArraySlice<Int32>, windows: Int) -> [Int32] {
        let ids = Array(ids)
        var t = [Int32](repeating: -100, count: ids.count)
        for w in 0..<windows { for i in 0..<(length - 1) { t[w * length + i] = ids[w * length + i + 1] } }
        return t
    }
}

public enum Calibration {
    /// Makes only the named parameters trainable (gradients are computed for nothing else, so the
    /// backward pass stops below the first layer that matters and skips the embedding's gradient).
    public static func restrictGradients(_ model: any LanguageModel, to names: Set<String>) {
        for p in model.parameters { p.requiresGrad = names.contains(p.name) }
    }

    /// The parameters that a structured plan over `groups` can score.
    public static func parameterNames(of groups: [PruningGroup]) -> Set<String> {
        Set(groups.flatMap { $0.members.map(\.tensor) })
    }

    /// About how much memory one forward + backward of `windows × length` tokens keeps alive at its peak: the
    /// activations each layer saves for backward (inputs of the norms and linears, rotated queries and keys, values,
    /// attention probabilities, the MLP's gate, up, SiLU and product), the logits and their gradient, and one
    /// gradient per layer weight. For ``BufferPool/reserve(bytes:)`` before a calibration pass.
    public static func stepBytes(_ c: ModelConfig, windows: Int, length: Int) -> Int {
        let tokens = windows * length
        var floats = 2 * tokens * c.vocabSize
        for l in 0..<c.layerCount {
            let q = c.heads[l] * c.headDim, kv = c.kvHeads[l] * c.headDim, ffn = c.intermediateSizes[l]
            floats += tokens * (5 * c.hiddenSize + q + 2 * kv + 4 * ffn) + windows * c.heads[l] * length * length
            floats += c.hiddenSize * (2 * q + 2 * kv + 3 * ffn)
        }
        return floats * MemoryLayout<Float>.stride
    }

    /// One forward + backward of the mean causal-LM cross-entropy over the whole set (all windows in
    /// one batch, as LLM-Pruner does). Gradients accumulate in each parameter's `grad`. Returns the loss.
    @discardableResult
    public static func accumulateGradients(
        _ model: any LanguageModel, _ set: CalibrationSet,
        windowsPerBatch: Int? = nil, progress: ProgressBar? = nil
    ) throws -> Double {
        var weightedLoss = 0.0
        var w = 0
        for (ids, n) in set.chunks(perPass: windowsPerBatch ?? set.windows) {
            let g = Graph(recording: true)
            let logits = try model.forward(g, tokens: ids, batch: n)
            let loss = try g.crossEntropy(logits, targets: set.targets(for: ids[...], windows: n))
            // Scale so that several batches add up to the gradient of the mean over all windows.
            try g.backward(loss, seed: Float(n) / Float(set.windows))
            weightedLoss += Double(loss.value[0]) * Double(n)
            w += n
            progress?.advance(by: n, status: String(format: "loss %.4f", weightedLoss / Double(w)))
        }
        progress?.finish()
        return weightedLoss / Double(set.windows)
    }

    /// Σₜ x² per input column of every linear of the named weights, over all calibration tokens (one forward, no
    /// tape), by weight name. Linears that read the same input get the same statistic.
    public static func inputEnergies(
        _ model: any LanguageModel, _ set: CalibrationSet, weights names: Set<String>
    ) throws -> [String: Tensor] {
        var result: [String: Tensor] = [:]
        var last: (TensorStorage, Tensor)?
        let g = Graph()
        g.linearInputObserver = { weight, x in
            guard names.contains(weight.name) else { return }
            if let last, last.0 === x.storage { result[weight.name] = last.1; return }
            let cols = x.shape.last!, rows = x.count / cols
            let s = Tensor(zeros: [cols])
            withExtendedLifetime(x) { tk_col_sumsq_acc(x.pointer, rows, cols, s.pointer) }
            last = (x.storage, s)
            result[weight.name] = s
        }
        _ = try model.forward(g, tokens: Array(set.tokens), batch: set.windows, cache: nil, logits: .last)
        return result
    }

    /// Gradients of the mean causal-LM cross-entropy over the whole set (one batch, as
    /// ``accumulateGradients(_:_:windowsPerBatch:progress:)``)
    /// computed one decoder layer at a time, for models whose weights cannot all be in memory (``LayerStore``):
    /// a forward without a tape keeps only each layer's input (activation checkpoints at layer boundaries); the head's
    /// backward gives the gradient of the last hidden state; then, from the last layer down, each layer is run again
    /// with a tape and differentiated with the incoming gradient, which yields its parameters' gradients and the
    /// gradient of its input. `visit(l)` is called while layer `l` is resident with its gradients in `grad` (they are
    /// cleared afterwards). Gradients reach only parameters with `requiresGrad` (the embedding gets none).
    /// Returns the loss.
    @discardableResult
    public static func layerwiseGradients(
        _ model: DecoderModel, _ set: CalibrationSet, progress: ProgressBar? = nil,
        visit: (Int) throws -> Void
    ) throws -> Double {
        let ids = Array(set.tokens)
        let steps = try DecoderModel.LayerSteps(model: model, batch: set.windows, length: set.length)
        var inputs: [Tensor] = []
        var h = try model.embed(Graph(), tokens: ids).value
        for l in model.layers.indices {
            inputs.append(h)
            let g = Graph()
            h = try model.layer(g, l, g.input(h), steps: steps).value
            progress?.advance(status: "forward")
        }
        var grad: Tensor
        let loss: Double
        do {
            let g = Graph(recording: true)
            let hidden = Parameter(name: "(hidden state)", value: h)
            let logits = try model.head(g, g.parameter(hidden), steps: steps, logits: .all)
            let ce = try g.crossEntropy(logits, targets: set.targets(for: set.tokens[...], windows: set.windows))
            loss = Double(ce.value[0])
            try g.backward(ce)
            guard let gh = hidden.grad else { throw PruneError.calibration("no gradient reached the last hidden state") }
            grad = gh
        }
        // Layers below the lowest one with a trainable parameter need no backward.
        let lowest = model.layers.firstIndex { $0.all.contains { $0.requiresGrad } } ?? model.layers.count
        for l in model.layers.indices.reversed() {
            guard l >= lowest else { try visit(l); progress?.advance(); continue }
            let g = Graph(recording: true)
            let input = Parameter(name: "(layer \(l) input)", value: inputs[l], requiresGrad: l > lowest)
            let out = try model.layer(g, l, g.parameter(input), steps: steps)
            try g.backward(try g.weightedSum(out, grad))
            try visit(l)
            for p in model.layers[l].all { p.zeroGrad() }
            inputs[l] = Tensor(zeros: [0])
            if l > lowest {
                guard let gi = input.grad else { throw PruneError.calibration("no gradient reached the input of layer \(l)") }
                grad = gi
            }
            progress?.advance(status: String(format: "backward, loss %.4f", loss))
        }
        progress?.finish()
        return loss
    }

    /// The Fisher-diagonal term of second-order Taylor importance, ½ Σₛ (w·gₛ)², with one backward per
    /// window s. Leaves every `grad` cleared.
    public static func fisher(_ model: any LanguageModel, _ set: CalibrationSet, progress: ProgressBar? = nil) throws -> [String: Tensor] {
        var acc: [String: Tensor] = [:]
        for p in model.parameters { p.zeroGrad() }
        for w in 0..<set.windows {
            let ids = set.tokens[(w * set.length)..<((w + 1) * set.length)]
            let g = Graph(recording: true)
            let logits = try model.forward(g, tokens: Array(ids), batch: 1)
            try g.backward(try g.crossEntropy(logits, targets: set.targets(for: ids, windows: 1)))
            for p in model.parameters {
                guard let grad = p.grad else { continue }
                let n = p.value.count
                let wg = Tensor(uninitialized: p.shape)
                tk_mul(p.value.pointer, grad.pointer, wg.pointer, n)
                let sq = Tensor(uninitialized: p.shape)
                tk_scale(wg.pointer, 0.5, sq.pointer, n)
                withExtendedLifetime((sq, wg)) {
                    if let a = acc[p.name] {
                        tk_mul_acc(sq.pointer, wg.pointer, a.pointer, n)
                    } else {
                        let a = Tensor(zeros: p.shape)
                        tk_mul_acc(sq.pointer, wg.pointer, a.pointer, n)
                        acc[p.name] = a
                    }
                }
                p.zeroGrad()
            }
            progress?.advance()
        }
        progress?.finish()
        return acc
    }
}
