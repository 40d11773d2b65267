import Foundation
import TopiaryAutodiff
import TopiaryCore

/// A low-rank adapter on one linear layer: `y = x·Wᵀ + (α/r)·dropout(x)·Aᵀ·Bᵀ`, with `A` `[r, in]`
/// initialised Kaiming-uniform and `B` `[out, r]` zero, as PEFT does. The base weight stays frozen.
public final class LoRAAdapter: @unchecked Sendable {
    /// Name of the adapted weight (e.g. `model.layers.3.self_attn.q_proj.weight`).
    public let target: String
    public let a: Parameter
    public let b: Parameter
    public let rank: Int
    public let alpha: Float
    public let dropout: Float

    public var scale: Float { alpha / Float(rank) }

    public init(target: String, a: Parameter, b: Parameter, alpha: Float, dropout: Float) {
        self.target = target
        self.a = a
        self.b = b
        self.rank = a.shape[0]
        self.alpha = alpha
        self.dropout = dropout
    }

    /// New adapter for a weight of shape `[out, in]`.
    public convenience init(
        target: String, outFeatures: Int, inFeatures: Int, rank: Int, alpha: Float, dropout: Float,
        rng: inout SplitMix64
    ) {
        let bound = 1 / Float(inFeatures).squareRoot()  // kaiming_uniform_(a=√5)
        let a = Tensor(shape: [rank, inFeatures], values: (0..<(rank * inFeatures)).map { _ in rng.nextFloat(-bound, bound) })
        let stem = target.hasSuffix(".weight") ? String(target.dropLast(7)) : target
        self.init(
            target: target, a: Parameter(name: stem + ".lora_A.weight", value: a),
            b: Parameter(name: stem + ".lora_B.weight", value: Tensor(zeros: [outFeatures, rank])), alpha: alpha, dropout: dropout)
    }

    /// `W += (α/r)·B·A`.
    public func merge(into w: Parameter) {
        let out = b.shape[0], inDim = a.shape[1]
        BLAS.gemm(m: out, n: inDim, k: rank, alpha: scale, a: b.value.pointer, b: a.value.pointer, beta: 1, c: w.value.pointer)
    }
}

/// A model whose linear layers can carry LoRA adapters.
public protocol AdaptableModel: LanguageModel {
    /// Adapters by the name of the weight they adapt.
    var adapters: [String: LoRAAdapter] { get set }
}

extension Graph {
    /// A linear layer with its adapter, if any.
    public func linear(_ x: Var, _ w: Parameter, adapter: LoRAAdapter?) throws -> Var {
        linearInputObserver?(w, x.value)
        if skippedLinears.contains(w.name) { return input(Tensor(zeros: Array(x.shape.dropLast()) + [w.shape[0]])) }
        let x = try linearInputTransform?(w, x) ?? x
        let y = try linear(x, parameter(w))
        guard let adapter else { return y }
        let h = try dropout(x, adapter.dropout)
        let low = try linear(linear(h, parameter(adapter.a)), parameter(adapter.b))
        return try add(y, scale(low, adapter.scale))
    }
}
