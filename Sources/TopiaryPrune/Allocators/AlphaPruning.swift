import TopiaryCore
import TopiaryModels

/// AlphaPruning (Lu et al. 2024): layers whose weight spectra are less heavy-tailed (larger Hill α) are pruned more.
public struct AlphaPruningAllocator: LayerAllocator {
    public init() {}
    public var name: String { "alphapruning" }
    public var summary: String { "heavy-tail α of each layer's weight spectra: lighter tails pruned more" }
    public var scoreName: String? { "α" }
    public var recordKey: String? { "layer_alphas" }

    public func allocate(
        model: DecoderModel, sparsity: Double, calibration: CalibrationSet?, options: AllocationOptions,
        progress: ProgressBar?
    ) throws -> LayerAllocationResult? {
        let (ratios, alphas) = try LayerAllocation.alphaPruning(
            model: model, sparsity: sparsity, epsilon: options.epsilon, tail: options.tail)
        return LayerAllocationResult(sparsities: ratios, scores: alphas)
    }
}

extension AllocationMethod {
    public static let alphapruning = AllocationMethod(rawValue: "alphapruning")!
}
