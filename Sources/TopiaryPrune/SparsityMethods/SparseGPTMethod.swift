import TopiaryCore
import TopiaryModels

/// SparseGPT: optimal-brain-surgeon updates with the Hessian 2/N·XᵀX, blocks of 128 columns, layer by layer.
public struct SparseGPTMethod: LayerwiseSparsityMethod {
    public init() {}
    public var name: String { "sparsegpt" }
    public var inputStatistic: InputStatistic? { .hessian }
}

extension SparsifyMethod { public static let sparsegpt = SparsifyMethod(rawValue: "sparsegpt")! }
