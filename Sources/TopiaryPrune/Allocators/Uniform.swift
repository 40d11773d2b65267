import TopiaryCore
import TopiaryModels

/// Every layer gets the target sparsity.
public struct UniformAllocator: LayerAllocator {
    public init() {}
    public var name: String { "uniform" }
    public var summary: String { "every layer at the target" }
    public var scoreName: String? { nil }

    public func allocate(
        model: DecoderModel, sparsity: Double, calibration: CalibrationSet?, options: AllocationOptions,
        progress: ProgressBar?
    ) throws -> LayerAllocationResult? { nil }
}

extension AllocationMethod {
    public static let uniform = AllocationMethod(rawValue: "uniform")!
}
