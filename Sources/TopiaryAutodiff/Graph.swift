import Foundation
import TopiaryCore

/// The kind of a recorded operation. The dependency-graph builder reads these to learn how
/// dimensions flow through the model, so every op that touches a parameter says so.
public enum OpKind: String, Sendable, CaseIterable {
    case input, parameter
    case embedding, linear, matmul, rmsnorm, groupedRMSNorm, layernorm, addBias
    case add, mul, scale, silu, geluTanh, geluErf, softmax
    case rope, attention
    case reshape, transpose, slice, concat
    case crossEntropy, distillation, meanSquaredError, sum, weightedSum, dropout, gaussianGate
}

/// What a recorded operation did: its kind, inputs (node ids), the parameter it reads (if any),
/// its output shape and integer attributes (head counts, axes, offsets …).
public struct OpRecord: Sendable {
    public let kind: OpKind
    public let inputs: [Int]
    public let parameter: Parameter?
    public let outputShape: [Int]
    public let attributes: [String: Int]
}

/// A value flowing through a ``Graph``: a tensor plus the node that produced it (when recording).
public struct Var: @unchecked Sendable {
    public let value: Tensor
    /// Index of the producing node in the graph, or -1 when the graph does not record.
    public let node: Int
    public var shape: [Int] { value.shape }
}

/// Backward rule: given the gradient of the output and which inputs need a gradient, returns one
/// gradient per input (nil where not needed).
typealias BackwardRule = (_ gradOutput: Tensor, _ needs: [Bool]) throws -> [Tensor?]

final class Node {
    let record: OpRecord
    let requiresGrad: Bool
    var backward: BackwardRule?
    init(record: OpRecord, requiresGrad: Bool, backward: BackwardRule?) {
        self.record = record
        self.requiresGrad = requiresGrad
        self.backward = backward
    }
}

/// A tape of operations: runs every op eagerly and, when `recording`, remembers what is needed to
/// differentiate it.
///
/// The same model code runs for inference (`Graph()`, nothing kept) and for training or tracing
/// (`Graph(recording: true)`), so there is one definition of the model's math.
///
/// ```swift
/// let g = Graph(recording: true)
/// let logits = try model.forward(g, tokens: batch)
/// let loss = try g.crossEntropy(logits, targets: targets)
/// try g.backward(loss)          // parameter.grad now holds ∂loss/∂parameter
/// ```
public final class Graph {
    public let recording: Bool
    /// Training mode: dropout is active (seeded by ``dropoutSeed``); off for inference and tracing.
    public var training = false
    /// Seed of the dropout masks of this graph (masks differ per dropout call, in call order).
    public var dropoutSeed: UInt64 = 0
    var dropoutCalls: UInt64 = 0
    /// Called with each model linear layer's weight and input (calibration statistics for Wanda, SparseGPT).
    public var linearInputObserver: ((Parameter, Tensor) -> Void)?
    /// Names of model linear weights whose products are not needed (a pass that only observes their inputs):
    /// `linear(_:_:adapter:)` gives zeros for them without the GEMM.
    public var skippedLinears: Set<String> = []
    /// Rewrites a model linear layer's input before the product (e.g. a variational-dropout gate on the units that
    /// the linear reads); the observer sees the input before it.
    public var linearInputTransform: ((Parameter, Var) throws -> Var)?
    var nodes: [Node] = []
    /// When profiling, seconds spent per op kind: forward (time since the previous op was recorded)
    /// and backward (each backward rule).
    public private(set) var forwardSeconds: [OpKind: Double]?
    public private(set) var backwardSeconds: [OpKind: Double]?
    private var lastRecord = DispatchTime.now().uptimeNanoseconds

    /// Records operations without their backward rules (which hold the tensors they read): a trace for the
    /// dependency graph that keeps no weights alive, so a streamed model can be traced layer by layer.
    public let tracingOnly: Bool

    public init(recording: Bool = false, profile: Bool = false, tracingOnly: Bool = false) {
        self.recording = recording || tracingOnly
        self.tracingOnly = tracingOnly
        if profile {
            forwardSeconds = [:]
            backwardSeconds = [:]
        }
    }

    /// The recorded operations in execution order (empty when not recording).
    public var records: [OpRecord] { nodes.map(\.record) }

    /// Drops the tape (saved activations included).
    public func reset() { nodes.removeAll(keepingCapacity: false) }

    // MARK: - Recording

    func record(
        _ kind: OpKind, _ inputs: [Var], parameter: Parameter? = nil, output: Tensor,
        attributes: [String: Int] = [:], backward: BackwardRule?
    ) -> Var {
        if forwardSeconds != nil {
            let now = DispatchTime.now().uptimeNanoseconds
            forwardSeconds![kind, default: 0] += Double(now - lastRecord) / 1e9
            lastRecord = now
        }
        guard recording else { return Var(value: output, node: -1) }
        let needs = inputs.map { $0.node >= 0 && nodes[$0.node].requiresGrad }
        let requires = needs.contains(true)
        let node = Node(
            record: OpRecord(
                kind: kind, inputs: inputs.map(\.node), parameter: parameter, outputShape: output.shape,
                attributes: attributes),
            requiresGrad: requires && !tracingOnly, backward: requires && !tracingOnly ? backward : nil)
        nodes.append(node)
        return Var(value: output, node: nodes.count - 1)
    }

    /// A constant input (token ids, targets, masks): no gradient.
    public func input(_ t: Tensor) -> Var {
        guard recording else { return Var(value: t, node: -1) }
        nodes.append(
            Node(
                record: OpRecord(kind: .input, inputs: [], parameter: nil, outputShape: t.shape, attributes: [:]),
                requiresGrad: false, backward: nil))
        return Var(value: t, node: nodes.count - 1)
    }

    /// A parameter enters the graph; its gradient accumulates into `p.grad` on backward.
    public func parameter(_ p: Parameter) -> Var {
        lastRecord = DispatchTime.now().uptimeNanoseconds
        guard recording else { return Var(value: p.value, node: -1) }
        nodes.append(
            Node(
                record: OpRecord(kind: .parameter, inputs: [], parameter: p, outputShape: p.shape, attributes: [:]),
                requiresGrad: p.requiresGrad, backward: nil))
        return Var(value: p.value, node: nodes.count - 1)
    }

    // MARK: - Backward

    /// Back-propagates from a scalar `loss`, accumulating into every reachable parameter's `grad`.
    /// The tape is released afterwards.
    public func backward(_ loss: Var, seed: Float = 1) throws {
        guard recording, loss.node >= 0 else { throw AutodiffError.notRecording }
        guard loss.value.count == 1 else { throw AutodiffError.notScalar(shape: loss.shape) }
        var grads = [Tensor?](repeating: nil, count: nodes.count)
        grads[loss.node] = Tensor(shape: loss.shape, repeating: seed)
        for id in stride(from: loss.node, through: 0, by: -1) {
            guard var g = grads[id] else { continue }
            let node = nodes[id]
            grads[id] = nil
            if node.record.kind == .parameter, let p = node.record.parameter {
                if p.grad == nil {
                    p.grad = g.isUniquelyOwned() ? g.reshaped(p.shape) : g.copy().reshaped(p.shape)
                } else {
                    p.accumulate(g)
                }
                continue
            }
            guard node.requiresGrad, let rule = node.backward else { continue }
            let needs = node.record.inputs.map { $0 >= 0 && nodes[$0].requiresGrad }
            let t0 = DispatchTime.now().uptimeNanoseconds
            let inputGrads = try rule(g, needs)
            if backwardSeconds != nil {
                backwardSeconds![node.record.kind, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            }
            for (k, input) in node.record.inputs.enumerated() where needs[k] {
                guard let gi = inputGrads[k] else { continue }
                guard gi.count == nodes[input].record.outputShape.reduce(1, *) else {
                    throw AutodiffError.shapeMismatch(
                        op: "\(node.record.kind.rawValue) backward",
                        shapes: [gi.shape, nodes[input].record.outputShape])
                }
                if var existing = grads[input] {
                    grads[input] = nil
                    if existing.isUniquelyOwned() {
                        BLAS.axpy(n: gi.count, alpha: 1, x: gi.pointer, y: existing.pointer)
                        grads[input] = existing
                    } else {
                        let out = existing.copy()
                        BLAS.axpy(n: gi.count, alpha: 1, x: gi.pointer, y: out.pointer)
                        grads[input] = out
                    }
                } else {
                    grads[input] = gi
                }
            }
            node.backward = nil  // free saved activations as we go
        }
        reset()
    }
}
