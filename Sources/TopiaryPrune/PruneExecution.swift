import Foundation
import TopiaryCore
import TopiaryGraph
import TopiaryModels

/// The removal step of structured pruning, shared by `topiary prune`, the recipe's prune stage and the sweep: the
/// per-layer shares (equal, or learned by ``LayerRatioSearch``), the plan from the scores — or, for a sequential
/// criterion, the layer-by-layer OBS driver — the optional OBS update of the linears that read removed units, the
/// optional k-means merge of MLP channels, and the surgery itself.
public struct PruneExecution {
    /// How MLP channels leave: removed by importance, or merged into as many k-means clusters as are kept.
    public enum Merge: String, CaseIterable, Codable, Sendable {
        case remove, kmeans
    }

    public var pruner: StructuredPruner
    /// The OBS update of o_proj/down_proj on the calibration inputs (``StructuredOBS``).
    public var compensate = false
    public var merge = Merge.remove
    /// MLP channels removed per greedy OBS step.
    public var obsStep = 16
    public var seed: UInt64 = 0

    public init(pruner: StructuredPruner) { self.pruner = pruner }

    /// The label of the plan's mode in `pruning.json` (`uniform`, `uniform+kmeans-merge`, `uniform+obs-update`).
    public var modeLabel: String {
        pruner.mode.rawValue + (merge == .kmeans ? "+kmeans-merge" : "") + (compensate ? "+obs-update" : "")
    }

    /// Checks that the settings go together (before any work).
    public func validate(sequential: Bool) throws {
        if sequential || compensate {
            guard merge == .remove, pruner.layerShares == nil else {
                throw PruneError.notApplicable("obs and compensate work with equal layer shares and merge `remove`")
            }
        }
        if sequential && pruner.mode != .uniform {
            throw PruneError.notApplicable("the obs criterion chooses units layer by layer: use mode uniform")
        }
    }

    /// Prunes `model` in place and returns what was removed. `estimator` is nil for a sequential criterion (obs), whose
    /// driver scores units on `calibration` while it removes them.
    public func run(
        model: DecoderModel, graph: DependencyGraph, estimator: (any ImportanceEstimator)?, calibration: CalibrationSet?,
        progress: ProgressBar? = nil
    ) throws -> [GroupRemoval] {
        let removals: [GroupRemoval]
        if estimator == nil || compensate {
            guard let calibration else { throw PruneError.calibration("obs and the OBS update read calibration windows; none were given") }
            var obs = StructuredOBS(pruner: pruner)
            obs.compensate = compensate
            obs.step = obsStep
            if let estimator { obs.fixed = try pruner.plan(model: model, graph: graph, estimator: estimator) }
            removals = try obs.run(model: model, graph: graph, calibration: calibration, progress: progress)
        } else {
            var planned = try pruner.plan(model: model, graph: graph, estimator: estimator!)
            if merge == .kmeans { planned = try ChannelMerging.mergeMLP(planned, graph: graph, model: model, seed: seed) }
            try StructuredPruner.apply(planned, graph: graph, to: model)
            removals = planned
        }
        for p in model.parameters { p.zeroGrad() }
        return removals
    }

    /// Learns per-layer shares of the budget: each candidate prunes a fresh copy of the model (sharing the unchanged
    /// weights) by `scores`, and is rewarded by `reward` (the caller's perplexity on windows held out from the
    /// evaluation: lower is better). Returns the shares and the summary that `pruning.json` records.
    public func searchShares(
        model: DecoderModel, graph: DependencyGraph, scores: [Int: [Double]], windows: Int, evaluations: Int,
        offset: Int, progress: ProgressBar? = nil,
        reward: @escaping (DecoderModel) throws -> Double
    ) throws -> ([Int: Double], [String: Double], LayerRatioSearch.Result) {
        let weights = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0.value) })
        let result = try LayerRatioSearch(layers: Array(pruner.layers), evaluations: evaluations, seed: seed).run(progress: progress) {
            shares in
            let copy = try DecoderModel(config: model.config, weights: weights, source: "search candidate")
            var candidate = pruner
            candidate.layerShares = shares
            try StructuredPruner.apply(
                try candidate.plan(model: copy, graph: graph, estimator: PrecomputedScores(scores)), graph: graph, to: copy)
            return try reward(copy)
        }
        let summary = [
            "reward_ppl": result.fitness, "uniform_reward_ppl": result.uniformFitness, "evaluations": Double(result.history.count),
            "offset": Double(offset), "windows": Double(windows),
        ]
        return (result.shares, summary, result)
    }
}
