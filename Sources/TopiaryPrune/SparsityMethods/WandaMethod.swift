import TopiaryCore
import TopiaryModels

/// Wanda: |w|·‖X_j‖₂ per output row, layer by layer on the outputs of the already-pruned layers.
public struct WandaMethod: LayerwiseSparsityMethod {
    public init() {}
    public var name: String { "wanda" }
    public var inputStatistic: InputStatistic? { .columnEnergy }
}

extension SparsifyMethod { public static let wanda = SparsifyMethod(rawValue: "wanda")! }
