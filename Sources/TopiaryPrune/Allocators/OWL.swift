import TopiaryCore
import TopiaryModels

/// OWL (Yin et al. 2023): layers with more activation outliers (Wanda scores above M × their mean) are pruned less.
public struct OWLAllocator: LayerAllocator {
    public init() {}
    public var name: String { "owl" }
    public var summary: String { "outlier-weighed: layers with more activation outliers pruned less (reads calibration windows)" }
    public var scoreName: String? { "outliers" }
    public var recordKey: String? { "layer_outlier_ratios" }
    public var needsCalibration: Bool { true }

    public func allocate(
        model: DecoderModel, sparsity: Double, calibration: CalibrationSet?, options: AllocationOptions,
        progress: ProgressBar?
    ) throws -> LayerAllocationResult? {
        guard let calibration else { throw PruneError.calibration("OWL reads calibration windows; none were given") }
        let (ratios, outliers) = try LayerAllocation.owl(
            model: model, calibration: calibration, sparsity: sparsity, m: options.owlM, lambda: options.owlLambda, progress: progress)
        return LayerAllocationResult(sparsities: ratios, scores: outliers)
    }
}

extension AllocationMethod {
    public static let owl = AllocationMethod(rawValue: "owl")!
}
