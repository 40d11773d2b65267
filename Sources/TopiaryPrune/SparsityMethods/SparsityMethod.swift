import CTopiaryKernels
import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// What a sparsity method reads.
public struct SparsityNeeds: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// Calibration windows (activations or gradients).
    public static let calibration = SparsityNeeds(rawValue: 1)
    /// The dense model's gradient of the mean calibration loss.
    public static let gradients = SparsityNeeds(rawValue: 2)
    /// The dense model's per-window Fisher sums ½Σₛ(w·gₛ)² (instead of the gradient).
    public static let fisher = SparsityNeeds(rawValue: 4)
    /// Biases on the linears (Qwen2's q/k/v): the method does not apply to a model without them.
    public static let biases = SparsityNeeds(rawValue: 8)
}

/// How the layer-by-layer drivers summarise a linear's calibration input.
public enum InputStatistic: Sendable {
    /// Σₜ x_j² per input column (Wanda's ‖X_j‖²).
    case columnEnergy
    /// The Hessian 2/N·XᵀX of the layer-wise reconstruction (SparseGPT's OBS).
    case hessian
}

/// An unstructured or N:M sparsity method: weights keep their shapes, pruned entries become zeros.
///
/// Adding one is one file with a conforming type plus one line in ``SparsityMethods/all``; `sparsify`, recipes and sweeps
/// take it by name.
public protocol SparsityMethodImplementation: Sendable {
    /// The name users type (`--method NAME`, `method: NAME`, a sweep's method).
    var name: String { get }
    var needs: SparsityNeeds { get }
    /// The input statistic of a layer-by-layer method (nil for the others).
    var inputStatistic: InputStatistic? { get }
    /// Prunes the seven linears of every layer to the targets of `s` (pattern, per-layer sparsities).
    func run(_ s: Sparsifier, model: DecoderModel, calibration: CalibrationSet?, progress: ProgressBar?) throws
}

extension SparsityMethodImplementation {
    public var inputStatistic: InputStatistic? { nil }
}

/// A method that scores each weight from the layer's own weights (no calibration): it can run one layer at a time, as a
/// streamed model's export needs.
public protocol WeightMetricMethod: SparsityMethodImplementation {
    /// Scores of `w`'s entries (lowest pruned first), or nil to leave `w` dense. `biases` are the layer's by weight name.
    func metric(_ w: Parameter, biases: [String: Parameter], rng: inout SplitMix64) -> Tensor?
    /// True when entries are ranked within each output row rather than over the whole matrix.
    var perRow: Bool { get }
}

extension WeightMetricMethod {
    public var needs: SparsityNeeds { [] }
    public var perRow: Bool { false }

    public func run(_ s: Sparsifier, model: DecoderModel, calibration: CalibrationSet?, progress: ProgressBar?) throws {
        var rng = SplitMix64(seed: s.seed)
        for l in model.layers.indices {
            s.pruneByWeights(model.layers[l], layer: l, rng: &rng)
            progress?.advance()
        }
    }
}

/// A method that scores each weight from the dense model's gradient (or Fisher) on the calibration windows.
public protocol GradientMetricMethod: SparsityMethodImplementation {
    /// Scores of `w`'s entries from `statistic` (the gradient, or the Fisher term with ``SparsityNeeds/fisher``).
    func metric(_ w: Parameter, statistic g: Tensor) -> Tensor
}

extension GradientMetricMethod {
    public func run(_ s: Sparsifier, model: DecoderModel, calibration: CalibrationSet?, progress: ProgressBar?) throws {
        guard let calibration else { throw PruneError.calibration("--method \(name) needs calibration data (--calibration FILE)") }
        let statistics = try s.precomputed ?? s.denseStatistics(model: model, calibration: calibration)
        for (l, layer) in model.layers.enumerated() {
            for w in Sparsifier.linears(layer) {
                guard let g = statistics[w.name], g.count == w.value.count else { throw PruneError.missingGradient(w.name) }
                let m = withExtendedLifetime(g) { metric(w, statistic: g) }
                s.prune(w, metric: m, perRow: false, sparsity: s.layerTarget(l))
            }
            progress?.advance()
        }
    }
}

/// A method that prunes each linear from its calibration input inside the layer, layer by layer on the outputs of the
/// already-pruned layers (``Sparsifier/sequential(model:calibration:progress:)``).
public protocol LayerwiseSparsityMethod: SparsityMethodImplementation {}

extension LayerwiseSparsityMethod {
    public var needs: SparsityNeeds { .calibration }
    public func run(_ s: Sparsifier, model: DecoderModel, calibration: CalibrationSet?, progress: ProgressBar?) throws {
        guard let calibration else { throw PruneError.calibration("--method \(name) needs calibration data (--calibration FILE)") }
        try s.sequential(model: model, calibration: calibration, progress: progress)
    }
}

/// The registry of sparsity methods: the one list of them.
public enum SparsityMethods {
    public static let all: [any SparsityMethodImplementation] = [
        MagnitudeMethod(), NegMagnitudeMethod(), BiasMethod(), NegBiasMethod(), RandomMethod(), WandaMethod(), SparseGPTMethod(),
        MovementMethod(), GradientMethod(), TaylorMethod(), EWCMethod(), L1RowsMethod(), RandomPatternMethod(), FisherOBSMethod(),
    ]
    public static func named(_ name: String) -> (any SparsityMethodImplementation)? { all.first { $0.name == name } }
    public static var names: [String] { all.map(\.name) }
}

/// A sparsity method by name (what requests, recipes and the command line carry). Only registered names exist.
public struct SparsifyMethod: RegisteredName {
    public static var registeredNames: [String] { SparsityMethods.names }
    public static var kindName: String { "method" }
    public let rawValue: String

    public init?(rawValue: String) {
        guard SparsityMethods.named(rawValue) != nil else { return nil }
        self.rawValue = rawValue
    }

    public var implementation: any SparsityMethodImplementation { SparsityMethods.named(rawValue)! }
    public var needs: SparsityNeeds { implementation.needs }
    public var needsCalibration: Bool { needs.contains(.calibration) }
    /// Methods scored from calibration gradients (or the Fisher).
    public var needsGradients: Bool { needs.contains(.gradients) || needs.contains(.fisher) }
    /// Of those, the methods scored from the Fisher term ½Σₛ(w·gₛ)² (one backward per window).
    public var needsFisher: Bool { needs.contains(.fisher) }
}
