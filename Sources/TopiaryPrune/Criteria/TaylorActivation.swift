import CTopiaryKernels
import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels

/// Topiary's indicator, activation-aware Taylor: the second-order Taylor (Fisher) score of a unit — or, with
/// `taylorOrder` 1, its element-wise first-order score — combined with the energy the unit feeds forward: for every
/// member that is a linear's input column j (o_proj columns of a head group, the down_proj column of an MLP channel),
/// ‖W[:, j]‖² · Σₜ xₜⱼ² over the calibration tokens, the squared norm of that column's contribution to the layer output
/// (Wanda's |W|·‖X‖ for a whole column, squared). The score is T · E^λ (T and E each divided by their mean over the
/// group's units): λ weighs the terms on a logarithmic scale, and λ = 0 is the Taylor term's ranking. The Taylor term
/// sees how the loss responds to the unit on the calibration batch; the energy term sees how much the unit changes the
/// residual stream, which first-order Taylor misses where gradients cancel.
public struct TaylorActivationCriterion: Criterion {
    public init() {}
    public var name: String { "taylor-act" }
    public var summary: String { "Taylor × activation energy^λ (Topiary's; --lambda, --taylor-order)" }
    public var inSweeps: Bool { false }
    public func needs(_ options: CriterionOptions) -> CriterionNeeds {
        options.taylorOrder == 2 ? [.fisher, .activations] : [.gradients, .activations]
    }

    public func scores(
        for group: PruningGroup, parameters: [String: Parameter], statistics: CriterionStatistics,
        options: CriterionOptions, aggregation: Aggregation
    ) throws -> [Double] {
        let taylorTerm: any Criterion = options.taylorOrder == 2 ? Taylor2Criterion() : TaylorCriterion()
        let taylor = try taylorTerm.scores(
            for: group, parameters: parameters, statistics: statistics, options: options,
            aggregation: aggregation)
        var energy = [Double](repeating: 0, count: group.units)
        var found = false
        for m in group.members where m.axis == 1 {
            guard let p = parameters[m.tensor], let x = statistics.activations[m.tensor], x.count == p.shape[1] else { continue }
            found = true
            let w = p.value
            let squares = Tensor(uninitialized: w.shape)
            tk_mul(w.pointer, w.pointer, squares.pointer, w.count)
            let columns = squares.sums(keepingAxis: 1)  // ‖W[:, j]‖²
            for u in 0..<group.units { for j in m.channels(ofUnit: u) { energy[u] += columns[j] * Double(x[j]) } }
        }
        guard found else { return taylor }
        func normalised(_ v: [Double]) -> [Double] {
            let mean = v.reduce(0, +) / Double(max(1, v.count))
            return mean > 0 ? v.map { $0 / mean } : v
        }
        // A product (a sum of logarithms): scale-free, so a heavy-tailed Taylor term is not swamped by the energy
        // term for most units, and λ → 0 gives the Taylor ranking back.
        return zip(normalised(taylor), normalised(energy)).map { $0 * pow(max($1, 1e-30), options.lambda) }
    }
}

extension ImportanceCriterion {
    public static let taylorActivation = ImportanceCriterion(rawValue: "taylor-act")!
}
