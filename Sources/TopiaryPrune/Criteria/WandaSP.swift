import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// Wanda-sp, the structured Wanda (An et al. 2024, FLAP's baseline; Sun et al.'s metric per structure): each weight's
/// |W_ij|·‖X_j‖₂, with ‖X_j‖₂ the norm of input feature j of that linear over the calibration tokens, summed over the
/// weights of a unit in every member (the rows a unit owns in q/k/v or gate/up, the columns it owns in o_proj or
/// down_proj). Needs one forward over the calibration windows and no gradients.
public struct WandaSPCriterion: ChannelCriterion {
    public init() {}
    public var name: String { "wanda-sp" }
    public var summary: String { "Σ|W|·‖X‖ over a unit's weights (structured Wanda; one forward, no gradients)" }
    public func needs(_ options: CriterionOptions) -> CriterionNeeds { .activations }

    public func channelScores(_ p: Parameter, axis: Int, statistics: CriterionStatistics, options: CriterionOptions) throws -> [Double] {
        let w = p.value
        // A bias or norm weight multiplies a constant input: its |w| is its whole contribution.
        guard w.rank == 2 else { return (0..<w.count).map { Double(abs(w[$0])) } }
        guard let x = statistics.activations[p.name], x.count == w.shape[1] else {
            throw PruneError.calibration("no input statistics were collected for \(p.name)")
        }
        let rows = w.shape[0], cols = w.shape[1]
        let norms = (0..<cols).map { Float(x[$0]).squareRoot() }
        let e = Tensor(uninitialized: w.shape)
        withExtendedLifetime(w) {
            for r in 0..<rows { for j in 0..<cols { e[r * cols + j] = abs(w[r * cols + j]) * norms[j] } }
        }
        return e.sums(keepingAxis: axis)
    }
}

extension ImportanceCriterion {
    public static let wandaSP = ImportanceCriterion(rawValue: "wanda-sp")!
}
