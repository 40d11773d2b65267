import CTopiaryKernels
import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels

/// Variational dropout sparsification (Molchanov, Ashukha & Vetrov 2017), per structural unit: every unit of the ranked
/// groups (an MLP channel, a KV-head group) multiplies what it feeds into the linear that reads it (down_proj's input
/// column, o_proj's columns of the group's heads) by Gaussian noise 1 + √α·ε, ε ~ N(0, 1) per token. The model's
/// weights stay frozen; only log α is learned, with the autodiff, by minimising on the calibration windows
///
///     mean cross-entropy + klWeight · Σᵤ KL(α_u) / N        (N: calibration tokens)
///
/// with the sparse-VD approximation KL(α) ≈ k₁ − k₁·σ(k₂ + k₃·log α) + ½·log(1 + 1/α). The KL term pushes every α
/// up (noise is free); the loss keeps it small where the unit matters. Units with a large α are pruned first: the
/// score of a unit is −log α.
public struct VariationalDropout {
    public var steps = 100
    public var windowsPerStep = 4
    public var learningRate = 0.1
    public var initialLogAlpha = -8.0
    public var klWeight = 1.0
    public var seed: UInt64 = 0

    public init() {}

    /// The learned log α of every unit, by group id, and the training curve (loss, KL term) per step.
    public struct Result {
        public var logAlpha: [Int: [Double]]
        public var history: [(loss: Double, kl: Double)]
        /// −log α: higher = more important.
        public var scores: [Int: [Double]] { logAlpha.mapValues { $0.map { -$0 } } }
    }

    static let k1 = 0.63576, k2 = 1.87320, k3 = 1.48695

    /// KL(α) of the sparse-VD approximation and its derivative in log α.
    static func kl(_ logAlpha: Double) -> (value: Double, slope: Double) {
        let s = 1 / (1 + exp(-(k2 + k3 * logAlpha)))
        let value = k1 - k1 * s + 0.5 * log1p(exp(-logAlpha))
        let slope = -k1 * k3 * s * (1 - s) - 0.5 / (1 + exp(logAlpha))
        return (value, slope)
    }

    public func run(
        model: any LanguageModel, groups: [PruningGroup], calibration set: CalibrationSet,
        progress: ProgressBar? = nil
    ) throws -> Result {
        guard steps >= 1, windowsPerStep >= 1, learningRate > 0 else {
            throw PruneError.notApplicable("variational dropout needs steps ≥ 1, windows per step ≥ 1 and a positive learning rate")
        }
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0) })
        // One gate per reading linear: its columns' units (several groups could share a linear; they do not in LLaMA).
        struct Gate { let logAlpha: Parameter; let unitOfColumn: [Int32]; let groups: [(id: Int, first: Int, units: Int)] }
        var gates: [String: Gate] = [:]
        var byTensor: [String: [PruningGroup]] = [:]
        for g in groups {
            let readers = g.members.filter { $0.axis == 1 && params[$0.tensor]?.shape.count == 2 }
            guard readers.count == 1 else {
                throw PruneError.notApplicable(
                    "variational dropout needs one linear reading the units of \(g.kind) group \(g.id); it has \(readers.count)")
            }
            byTensor[readers[0].tensor, default: []].append(g)
        }
        for (tensor, gs) in byTensor {
            let cols = params[tensor]!.shape[1]
            var unitOf = [Int32](repeating: -1, count: cols)
            var layout: [(id: Int, first: Int, units: Int)] = []
            var next = 0
            for g in gs {
                let member = g.members.first { $0.tensor == tensor && $0.axis == 1 }!
                for u in 0..<g.units { for c in member.channels(ofUnit: u) { unitOf[c] = Int32(next + u) } }
                layout.append((g.id, next, g.units))
                next += g.units
            }
            // Columns that belong to no ranked unit get a unit of their own with no noise to learn (α stays at its start).
            let spare = Int32(next)
            for c in 0..<cols where unitOf[c] < 0 { unitOf[c] = spare }
            let p = Parameter(name: "vd." + tensor, value: Tensor(shape: [next + 1], repeating: Float(initialLogAlpha)))
            gates[tensor] = Gate(logAlpha: p, unitOfColumn: unitOf, groups: layout)
        }
        let frozen = model.parameters.map { ($0, $0.requiresGrad) }
        for p in model.parameters { p.requiresGrad = false }
        defer { for (p, r) in frozen { p.requiresGrad = r } }

        // Adam on log α (β = 0.9, 0.999; the trainer's AdamW kernel without decay). The spare unit (last) is not learned.
        let moments = gates.mapValues { (m: Tensor(zeros: [$0.logAlpha.count - 1]), v: Tensor(zeros: [$0.logAlpha.count - 1])) }
        let tokensTotal = Double(set.windows * (set.length - 1))
        var history: [(Double, Double)] = []
        var window = 0
        for step in 0..<steps {
            let n = min(windowsPerStep, set.windows)
            var ids: [Int32] = []
            for k in 0..<n { let w = (window + k) % set.windows; ids += set.tokens[(w * set.length)..<((w + 1) * set.length)] }
            window = (window + n) % set.windows
            let g = Graph(recording: true)
            var call: UInt64 = 0
            g.linearInputTransform = { w, x in
                guard let gate = gates[w.name] else { return x }
                call += 1
                let noise = Tensor(uninitialized: x.shape)
                tk_fill_normal(noise.pointer, noise.count, seed &+ UInt64(step) &* 0x9E37_79B9_7F4A_7C15 &+ call &* 0xBF58_476D_1CE4_E5B9)
                return try g.gaussianGate(x, logAlpha: g.parameter(gate.logAlpha), noise: noise, unitOfColumn: gate.unitOfColumn)
            }
            for gate in gates.values { gate.logAlpha.grad = nil }
            let logits = try model.forward(g, tokens: ids, batch: n)
            let targets = set.targets(for: ids[...], windows: n)
            let loss = try g.crossEntropy(logits, targets: targets)
            try g.backward(loss)
            var klSum = 0.0
            let t = Float(step + 1)
            for (name, gate) in gates {
                let a = gate.logAlpha, n = a.count - 1, (m, v) = moments[name]!
                let grad = Tensor(uninitialized: [n])
                for i in 0..<n {
                    let (value, slope) = Self.kl(Double(a.value[i]))
                    klSum += value
                    grad[i] = (a.grad?[i] ?? 0) + Float(klWeight * slope / tokensTotal)
                }
                withExtendedLifetime((grad, m, v)) {
                    tk_adamw(
                        a.value.pointer, grad.pointer, m.pointer, v.pointer, n, Float(learningRate), 0.9, 0.999, 1e-8, 0,
                        1 - powf(0.9, t), 1 - powf(0.999, t))
                }
                for i in 0..<n { a.value[i] = min(8, max(-12, a.value[i])) }
            }
            let l = Double(loss.value[0])
            history.append((l, klWeight * klSum / tokensTotal))
            progress?.advance(status: String(format: "loss %.4f  KL/N %.4f", l, klWeight * klSum / tokensTotal))
        }
        progress?.finish()
        var logAlpha: [Int: [Double]] = [:]
        for gate in gates.values {
            for (id, first, units) in gate.groups { logAlpha[id] = (first..<(first + units)).map { Double(gate.logAlpha.value[$0]) } }
        }
        return Result(logAlpha: logAlpha, history: history)
    }
}
