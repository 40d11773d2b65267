import Foundation
import TopiaryCore

/// A named, trainable tensor of a model (a weight matrix, a norm vector, a LoRA factor).
///
/// Gradients computed by ``Graph/backward(_:)`` accumulate into ``grad`` (summed over calls until
/// ``zeroGrad()``), so several calibration batches add up.
public final class Parameter: @unchecked Sendable {
    public let name: String
    /// The weights. For a parameter of a streamed model (``isResident`` false) this is an empty tensor until
    /// the layer store loads it; ``shape`` still tells its shape.
    public var value: Tensor { didSet { storedShape = value.shape; isResident = true } }
    public var grad: Tensor?
    private var storedShape: [Int]
    /// False while the weights stay in their file (a layer of a streamed model that is not in use).
    public private(set) var isResident = true
    /// When false, no gradient is computed for this parameter (a frozen base weight).
    public var requiresGrad: Bool

    public init(name: String, value: Tensor, requiresGrad: Bool = true) {
        self.name = name
        self.value = value
        self.requiresGrad = requiresGrad
        storedShape = value.shape
    }

    /// A parameter whose weights are not in memory yet (a layer store loads them when they are used).
    public init(name: String, offloadedShape shape: [Int], requiresGrad: Bool = true) {
        self.name = name
        self.value = Tensor(zeros: [0])
        self.requiresGrad = requiresGrad
        storedShape = shape
        isResident = false
    }

    /// The shape of the weights, resident or not.
    public var shape: [Int] { storedShape }

    /// Number of weights, resident or not.
    public var count: Int { storedShape.reduce(1, *) }

    /// Frees the weights (and any gradient), keeping the shape: a layer store calls this when it evicts a layer.
    public func offload() {
        let s = storedShape
        value = Tensor(zeros: [0])
        storedShape = s
        isResident = false
        grad = nil
    }

    /// Drops the accumulated gradient.
    public func zeroGrad() { grad = nil }

    /// Adds `g` into ``grad``.
    func accumulate(_ g: Tensor) {
        precondition(g.count == value.count, "gradient of \(name) has \(g.count) elements, expected \(value.count)")
        if let grad {
            BLAS.axpy(n: g.count, alpha: 1, x: g.pointer, y: grad.pointer)
        } else {
            grad = g.copy().reshaped(value.shape)
        }
    }
}

/// Errors raised while building or differentiating a graph. Each names the operation.
public enum AutodiffError: Error, LocalizedError, Equatable {
    case shapeMismatch(op: String, shapes: [[Int]])
    case noBackwardRule(op: String)
    case invalidArgument(op: String, message: String)
    case notScalar(shape: [Int])
    case notRecording

    public var errorDescription: String? {
        switch self {
        case let .shapeMismatch(op, shapes):
            return "\(op): incompatible shapes \(shapes.map { "\($0)" }.joined(separator: " and "))"
        case let .noBackwardRule(op):
            return "\(op): this operation has no backward rule (it cannot be differentiated)"
        case let .invalidArgument(op, message):
            return "\(op): \(message)"
        case let .notScalar(shape):
            return "backward: the loss must be a single value, got shape \(shape)"
        case .notRecording:
            return "backward: the graph was built without recording (use Graph(recording: true))"
        }
    }
}
