import Foundation
import TopiaryPrune

/// Unstructured or N:M sparsity of every layer's linears: the sparsify stage of a recipe and `topiary sparsify`.
public struct SparsifyConfig: Codable, Sendable, Equatable {
    public var method: SparsifyMethod = .wanda
    public var sparsity: Double = 0.5
    public var nm: String?
    public var allocation = "uniform"
    /// AlphaPruning: per-layer sparsities span [S·(1−ε), S·(1+ε)] before the mean is restored.
    public var epsilon = AllocationOptions().epsilon
    /// OWL: outlier threshold (× the layer's mean score) and the span ±λ.
    public var owlM = AllocationOptions().owlM
    public var owlLambda = AllocationOptions().owlLambda
    public var calibration = CalibrationConfig(windows: 32, length: 512)
    public var seed: UInt64 = 0
    // Optional settings stay out of the stage key when unset (nil: the default), so older recipes keep their checkpoints.
    /// AlphaPruning: where the Hill estimator's tail starts (default `peak`).
    public var alphaTail: LayerAllocation.TailStart?
    /// Wanda/SparseGPT: prune each linear from its actual input inside the layer (default false).
    public var trueSequential: Bool?
    /// fisher-obs: power γ of the output rows' Fisher mass in the mask selection (default 0.25).
    public var gamma: Double?

    public init() {}

    public var allocationMethod: AllocationMethod { AllocationMethod(rawValue: allocation) ?? .uniform }

    public var allocationOptions: AllocationOptions {
        var o = AllocationOptions()
        o.epsilon = epsilon
        o.tail = alphaTail ?? o.tail
        o.owlM = owlM
        o.owlLambda = owlLambda
        return o
    }

    /// Whether the calibration windows are read (by the method or the allocator).
    public var readsCalibration: Bool { method.needsCalibration || allocationMethod.needsCalibration }

    /// The sparsifier this request describes (per-layer sparsities are the allocator's, set when it has run).
    public func sparsifier() throws -> Sparsifier {
        var s = Sparsifier(method: method, sparsity: nm == nil ? sparsity : 0, pattern: try nm.map(NMPattern.init))
        s.seed = seed
        s.trueSequential = trueSequential ?? false
        s.rowSensitivityPower = gamma ?? s.rowSensitivityPower
        return s
    }

    public func validate() throws {
        try Require.halfOpen(sparsity, "sparsity", 0, 1)
        if let nm { try Require.that((try? NMPattern(nm)) != nil, "nm", nm, "is not a pattern: expected N:M with 1 ≤ N < M (e.g. 2:4)") }
        try Require.that(
            AllocationMethod(rawValue: allocation) != nil, "allocation", allocation,
            "is not one of \(AllocationMethod.registeredNames.joined(separator: ", "))")
        try Require.halfOpen(epsilon, "epsilon", 0, 1)
        try Require.that(owlM.isFinite && owlM > 0, "owl_m", owlM, "must be positive")
        try Require.halfOpen(owlLambda, "owl_lambda", 0, 0.5)
        if let gamma { try Require.that(gamma.isFinite && gamma >= 0 && gamma <= 100, "gamma", gamma, "must be in [0, 100]") }
        if nm != nil {
            try Require.that(
                allocation == "uniform", "allocation", allocation, "applies to unstructured {sparsity}, not to {nm}")
        }
        try Require.part("calibration") { try calibration.validate() }
    }
}
