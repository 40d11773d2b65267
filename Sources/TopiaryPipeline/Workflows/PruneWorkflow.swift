import Foundation
import TopiaryCore
import TopiaryEval
import TopiaryGraph
import TopiaryModels
import TopiaryPrune

/// Structured pruning as `topiary prune` and a recipe's importance and prune stages run it: the scores of the coupled
/// groups by the request's criterion, then the removal (equal or searched per-layer shares, the OBS update, the
/// k-means merge). The command runs both halves on one model; a run writes the scores to `importance.json` between
/// its two stages and prunes a fresh copy.
public struct PruneWorkflow {
    public let request: PruneRequest
    public var output: WorkflowOutput
    /// The seed of the removal's own randomness (k-means initialisation, the layer-ratio search): the command's
    /// `--seed`; a recipe's top-level `seed`.
    public var seed: UInt64

    public init(_ request: PruneRequest, output: WorkflowOutput = .terminal) throws {
        try request.validate()
        self.request = request
        self.output = output
        self.seed = request.importance.seed
    }

    var scoring: ImportanceScoring {
        ImportanceScoring(
            criterion: request.importance.criterion, aggregation: request.importance.aggregation,
            options: request.importance.criterionOptions)
    }

    /// Whether scoring reads the calibration windows.
    public var scoringReadsCalibration: Bool { request.prune.removesWidth && request.importance.needs.readsCalibration }
    /// Whether the removal reads them (a sequential criterion, or the OBS update).
    public var pruningReadsCalibration: Bool {
        (request.prune.removesWidth && (request.importance.isSequential || request.compensates)) || request.prune.removesBlocks
    }

    /// The calibration sizes against the model's context length and the memory of one calibration pass, before anything
    /// is allocated (a streamed model keeps one layer's activations at a time: only the length is checked).
    public func checkSizes(_ loaded: LoadedModel) throws {
        if let count = request.prune.blocks { try DepthPruner.check(count: count, layerCount: loaded.model.config.layerCount) }
        guard scoringReadsCalibration || pruningReadsCalibration else { return }
        try request.importance.calibration.checkSizes(loaded, bytes: calibrationBytes(loaded.model.config))
    }

    /// The memory one calibration pass of this request needs on a model of `config` (nil: not estimated).
    public func calibrationBytes(_ config: ModelConfig) -> Int? {
        scoring.calibrationBytes(
            config, windows: request.importance.calibration.windows, length: request.importance.calibration.length,
            compensate: request.compensates)
    }

    /// Faults in the memory of the backward pass ahead of it (while the graph is traced and the text tokenized).
    public func reserveMemory(_ config: ModelConfig) {
        scoring.reserveMemory(config, windows: request.importance.calibration.windows, length: request.importance.calibration.length)
    }

    /// The scores of every group of `layers` (none for a sequential criterion, which scores while it removes).
    public func score(model: DecoderModel, layers: ClosedRange<Int>, calibration set: CalibrationSet?) throws -> ImportanceFile {
        let c = request.importance
        let graph = try DependencyGraphBuilder().build(model: model)
        let ranked = StructuredPruner.rankedGroups(graph, layers: layers)
        guard request.prune.removesWidth else {
            // A depth-only plan ranks blocks, not groups: nothing to score ahead.
            return ImportanceFile(
                criterion: c.criterion.rawValue, aggregation: c.aggregation.rawValue, layers: [layers.lowerBound, layers.upperBound],
                groups: [], calibration: nil, calibrationLoss: nil)
        }
        let prepared = try scoring.prepare(
            model: model, groups: ranked, calibration: scoringReadsCalibration ? set : nil,
            progress: { output.progress($0, total: $1, unit: $2) })
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0) })
        var groups: [ImportanceFile.Group] = []
        for g in ranked where !c.isSequential {
            groups.append(
                ImportanceFile.Group(
                    id: g.id, kind: g.kind, layer: g.layer ?? -1, units: g.units,
                    scores: try prepared.estimator.scores(for: g, parameters: params)))
        }
        if let seconds = prepared.calibrationSeconds, let set, scoringReadsCalibration {
            output.log(String(format: "  calibration (%d × %d tokens) %.2f s", set.windows, set.length, seconds))
        }
        return ImportanceFile(
            criterion: c.criterion.rawValue, aggregation: c.aggregation.rawValue, layers: [layers.lowerBound, layers.upperBound],
            groups: groups,
            calibration: scoringReadsCalibration
                ? set.map { .init(windows: $0.windows, length: $0.length, offset: $0.offset, file: $0.source) } : nil,
            calibrationLoss: prepared.loss)
    }

    /// Prunes `model` in place by `importance` (the scores from ``score``; read from `source`) and returns the plan
    /// that `pruning.json` records. `calibration` is needed when ``pruningReadsCalibration``; `searchText` (its reward
    /// windows) when the allocation is `search`.
    public func prune(
        model: DecoderModel, importance: ImportanceFile, source: String, calibration set: CalibrationSet?,
        searchText: () throws -> TokenizedText
    ) throws -> PruningPlan {
        let c = request.prune
        let denseRange = try c.layerRange(layerCount: model.config.layerCount)
        let before = model.parameterCount
        let nonEmbedding = before - model.config.vocabSize * model.config.hiddenSize
        var scores = request.importance.isSequential ? nil : PrecomputedScores(file: importance, source: source)
        // Whole blocks first (scored on the calibration windows), then the width prune takes what is left of the budget.
        var blocks: BlockRemoval?
        // The groups before the removal, when precomputed width scores are to be carried to the kept layers.
        var denseGraph: DependencyGraph?
        if let count = c.blocks, count > 0 {
            guard let set else { throw PipelineError("removing whole blocks reads calibration windows") }
            let criterion = c.blockCriterion ?? .default
            if scores != nil && c.ratio > 0 { denseGraph = try DependencyGraphBuilder().build(model: model) }
            let budget = c.ratio > 0 ? Int(c.ratio * Double(nonEmbedding)) : nil
            let selection = c.blockSelection ?? .default
            let removal = try DepthPruner.run(
                model: model, count: count, criterion: criterion, selection: selection, calibration: set, budget: budget,
                progress: { step, blocks in
                    output.progress(
                        selection == .iterative ? "block \(step + 1)/\(count) (\(criterion))" : "block scores (\(criterion))",
                        total: blocks, unit: "blocks")
                })
            output.log(
                "  blocks removed by \(criterion): \(removal.removed.map(String.init).joined(separator: ", ")) ("
                    + "\(removal.parametersRemoved.formatted()) parameters)")
            blocks = removal
        }
        // The width ratio of the model after the blocks went that meets the plan's budget.
        let widthRatio: Double
        let range: ClosedRange<Int>
        if let blocks {
            let left = c.ratio * Double(nonEmbedding) - Double(blocks.parametersRemoved)
            let nowNonEmbedding = model.parameterCount - model.config.vocabSize * model.config.hiddenSize
            widthRatio = c.ratio > 0 ? max(0, left) / Double(nowNonEmbedding) : 0
            guard let kept = DepthPruner.keptRange(denseRange, kept: blocks.kept) else {
                if widthRatio > 0 {
                    throw PipelineError("every layer of prune.layers \(c.layers) was removed as a block: nothing is left to prune by width")
                }
                return plan(c, denseRange, importance, before, nonEmbedding, model, [], blocks)
            }
            range = kept
        } else {
            widthRatio = c.ratio
            range = denseRange
        }
        guard widthRatio > 0 else { return plan(c, denseRange, importance, before, nonEmbedding, model, [], blocks) }
        let graph = try DependencyGraphBuilder().build(model: model)
        if let blocks, let s = scores, let denseGraph {
            scores = PrecomputedScores(DepthPruner.carry(s.scores, from: denseGraph, to: graph, kept: blocks.kept), source: s.source)
        }
        var execution = PruneExecution(pruner: StructuredPruner(ratio: widthRatio, layers: range, mode: c.mode, roundTo: c.roundTo))
        execution.pruner.rounding = c.rounding ?? .nearest
        execution.compensate = request.compensates
        execution.merge = c.mergesByKMeans ? .kmeans : .remove
        execution.obsStep = request.importance.criterionOptions.obsStep
        execution.seed = seed
        var search: [String: Double]?
        if c.searches, let scores {
            let windows = c.searchWindows ?? PruneConfig.defaultSearchWindows
            let offset = c.searchOffset ?? PruneConfig.defaultSearchOffset
            let evaluations = c.searchEvaluations ?? PruneConfig.defaultSearchEvaluations
            let text = try searchText()
            guard offset + windows * 512 <= text.tokens.count else {
                throw PipelineError(
                    "\(text.path): search_windows \(windows) × 512 from token \(offset) run past its \(text.tokens.count) tokens")
            }
            let reward = Array(text.tokens[offset..<(offset + windows * 512)])
            let (shares, summary, result) = try execution.searchShares(
                model: model, graph: graph, scores: scores.scores, windows: windows, evaluations: evaluations, offset: offset,
                progress: output.progress("layer-ratio search", total: evaluations, unit: "candidates")
            ) { try PerplexityEvaluator(window: 512, maxWindows: windows).evaluate($0, tokens: reward).ppl }
            execution.pruner.layerShares = shares
            search = summary
            output.log(
                String(
                    format: "  layer-ratio search: reward ppl %.4f (uniform %.4f) after %d candidates; shares %@", result.fitness,
                    result.uniformFitness, result.history.count,
                    result.shares.sorted { $0.key < $1.key }.map { String(format: "%d:%.2f", $0.key, $0.value) }.joined(separator: " ")))
        }
        let set = pruningReadsCalibration ? set : nil
        if pruningReadsCalibration && set == nil {
            throw PipelineError("criterion \(request.importance.criterion.rawValue) and the OBS update read calibration windows")
        }
        let bar =
            set == nil
            ? nil
            : output.progress(execution.compensate ? "obs prune + update" : "obs prune", total: model.config.layerCount, unit: "layers")
        let removals = try execution.run(model: model, graph: graph, estimator: scores, calibration: set, progress: bar)
        var plan = plan(c, denseRange, importance, before, nonEmbedding, model, removals, blocks)
        plan.mode = execution.modeLabel
        plan.layerShares = execution.pruner.layerShares.map { Dictionary(uniqueKeysWithValues: $0.map { (String($0.key), $0.value) }) }
        plan.search = search
        return plan
    }

    /// The record of a prune (`pruning.json`): width removals by group of the model after the blocks went (layer
    /// indices renumbered), the blocks by their index before.
    private func plan(
        _ c: PruneConfig, _ range: ClosedRange<Int>, _ importance: ImportanceFile, _ before: Int, _ nonEmbedding: Int,
        _ model: DecoderModel, _ removals: [GroupRemoval], _ blocks: BlockRemoval?
    ) -> PruningPlan {
        var plan = PruningPlan(
            ratio: c.ratio, layers: Array(range), mode: c.mode.rawValue, importance: importance.criterion,
            aggregation: importance.aggregation,
            calibration: importance.calibration.map { ["windows": $0.windows, "length": $0.length, "offset": $0.offset] },
            calibrationLoss: importance.calibrationLoss,
            parametersBefore: before, parametersAfter: model.parameterCount, nonEmbeddingBefore: nonEmbedding, removals: removals)
        plan.blocks = blocks
        return plan
    }
}
