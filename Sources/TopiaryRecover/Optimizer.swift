import CTopiaryKernels
import Foundation
import TopiaryAutodiff
import TopiaryCore

/// Learning-rate schedules.
public enum LRSchedule: String, CaseIterable, Codable, Sendable {
    case constant, linear, cosine

    /// The rate at `step` (0-based) of `total`, after `warmup` linear warm-up steps.
    public func rate(base: Float, step: Int, total: Int, warmup: Int) -> Float {
        if warmup > 0 && step < warmup { return base * Float(step + 1) / Float(warmup) }
        let span = max(1, total - warmup), t = Float(step - warmup) / Float(span)
        switch self {
        case .constant: return base
        case .linear: return base * max(0, 1 - t)
        case .cosine: return base * 0.5 * (1 + cos(Float.pi * min(1, t)))
        }
    }
}

/// AdamW as PyTorch implements it (decoupled weight decay, bias-corrected moments).
public final class AdamW {
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    public var weightDecay: Float
    public private(set) var step = 0
    /// First and second moments by parameter name.
    public private(set) var moments: [String: (m: Tensor, v: Tensor)] = [:]

    public init(beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
    }

    /// One update of every parameter that has a gradient; clears the gradients.
    public func update(_ parameters: [Parameter], learningRate lr: Float) {
        step += 1
        let bc1 = 1 - powf(beta1, Float(step)), bc2 = 1 - powf(beta2, Float(step))
        for p in parameters {
            guard let g = p.grad else { continue }
            let state = moments[p.name] ?? (Tensor(zeros: p.shape), Tensor(zeros: p.shape))
            moments[p.name] = state
            tk_adamw(
                p.value.pointer, g.pointer, state.m.pointer, state.v.pointer, p.value.count, lr, beta1, beta2, eps,
                weightDecay, bc1, bc2)
            p.zeroGrad()
        }
    }

    /// Scales all gradients so that their global L2 norm is at most `maxNorm`; returns the norm before.
    @discardableResult
    public static func clipGradients(_ parameters: [Parameter], maxNorm: Float) -> Float {
        var total = 0.0
        for p in parameters { if let g = p.grad { total += tk_sumsq_d(g.pointer, g.count) } }
        let norm = Float(total.squareRoot())
        if maxNorm > 0 && norm > maxNorm {
            let s = maxNorm / (norm + 1e-6)
            for p in parameters { if let g = p.grad { BLAS.scal(n: g.count, alpha: s, x: g.pointer) } }
        }
        return norm
    }

    /// State for a checkpoint: moments as named tensors plus the step.
    public func stateTensors() -> [(String, Tensor)] {
        moments.keys.sorted().flatMap { k in [("\(k).exp_avg", moments[k]!.m), ("\(k).exp_avg_sq", moments[k]!.v)] }
    }

    public func restore(step: Int, tensors: [String: Tensor]) {
        self.step = step
        moments = [:]
        for (name, m) in tensors where name.hasSuffix(".exp_avg") {
            let key = String(name.dropLast(".exp_avg".count))
            if let v = tensors[key + ".exp_avg_sq"] { moments[key] = (m, v) }
        }
    }
}
