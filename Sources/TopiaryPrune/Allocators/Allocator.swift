import Foundation
import TopiaryCore
import TopiaryModels

/// The settings of the allocators; the one place for their defaults.
public struct AllocationOptions: Codable, Sendable, Equatable {
    /// AlphaPruning: per-layer sparsities span [S·(1−ε), S·(1+ε)] before the mean is restored.
    public var epsilon = 0.2
    /// AlphaPruning: where the Hill estimator's power-law tail starts.
    public var tail = LayerAllocation.TailStart.peak
    /// OWL: outlier threshold (× the layer's mean Wanda score) and the span ±λ.
    public var owlM = 5.0
    public var owlLambda = 0.08

    public init() {}

    public func validate() throws {
        guard epsilon >= 0 && epsilon < 1 else { throw PruneError.notApplicable("allocation epsilon must be in [0, 1)") }
        guard owlM > 0, owlLambda >= 0, owlLambda < 1 else { throw PruneError.notApplicable("OWL needs M > 0 and λ in [0, 1)") }
    }
}

/// What an allocator chose: one sparsity per layer, and the per-layer statistic it chose them from.
public struct LayerAllocationResult: Sendable {
    public var sparsities: [Double]
    public var scores: [Double]
}

/// How per-layer sparsities are chosen: every allocator keeps the parameter-weighted mean sparsity of the seven linears
/// at the target. Adding one is one file with a conforming type plus one line in ``Allocators/all``.
public protocol LayerAllocator: Sendable {
    /// The name users type (`--allocation NAME`, `allocation: NAME`).
    var name: String { get }
    var summary: String { get }
    /// What the per-layer statistic is called in logs and `sparsify.json` (nil: the allocator has none).
    var scoreName: String? { get }
    /// The key under which run records (`sparsify.json`, `results.json`) keep the per-layer statistic
    /// (`layer_alphas`); nil: not recorded.
    var recordKey: String? { get }
    var needsCalibration: Bool { get }
    /// Per-layer sparsities for the target `sparsity`; nil keeps every layer at the target.
    func allocate(
        model: DecoderModel, sparsity: Double, calibration: CalibrationSet?, options: AllocationOptions,
        progress: ProgressBar?
    ) throws -> LayerAllocationResult?
}

extension LayerAllocator {
    public var needsCalibration: Bool { false }
    public var recordKey: String? { nil }
}

/// The registry of allocators.
public enum Allocators {
    public static let all: [any LayerAllocator] = [UniformAllocator(), AlphaPruningAllocator(), OWLAllocator()]
    public static func named(_ name: String) -> (any LayerAllocator)? { all.first { $0.name == name } }
    public static var names: [String] { all.map(\.name) }
}

/// An allocator by name (what requests, recipes and the command line carry). Only registered names exist.
public struct AllocationMethod: RegisteredName {
    public static var registeredNames: [String] { Allocators.names }
    public static var kindName: String { "allocation" }
    public let rawValue: String

    public init?(rawValue: String) {
        guard Allocators.named(rawValue) != nil else { return nil }
        self.rawValue = rawValue
    }

    public var implementation: any LayerAllocator { Allocators.named(rawValue)! }
    public var needsCalibration: Bool { implementation.needsCalibration }
}
