import Foundation
import TopiaryCore

/// A named, trainable tensor of a model (a weight matrix, a norm vector, a LoRA factor).
///
/// Gradients computed by ``Graph/backward(_:)`` accumulate into ``grad`` (summed over calls until
/// ``zeroGrad()``), so several calibration batches add up.
public final class Parameter: @unchecked Sendable {
    public let name: String
    public var value: Tensor
    public var grad: Tensor?
    /// When false, no gradient is computed for this parameter (a frozen base weight).
    public var requiresGrad: Bool

    public init(name: String, value: Tensor, requiresGrad: Bool = true) {
        self.name = name
        self.value = value
        self.requiresGrad = requiresGrad
    }

    public var shape: [Int] { value.shape }

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
