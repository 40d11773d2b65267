import Foundation
import TopiaryCore
import TopiaryEval
import TopiaryGraph
import TopiaryModels
import TopiaryPrune

extension Pipeline {
    // MARK: importance

    func runImportance(dir: String) throws -> Outcome {
        let c = recipe.importance!
        let scoring = ImportanceScoring(criterion: c.criterion, aggregation: c.aggregation, options: c.criterionOptions)
        let m = try freshModel()
        let model = m.model
        // One backward over all windows follows: fault its memory in while the graph is traced and the text tokenized.
        scoring.reserveMemory(model.config, windows: c.calibration.windows, length: c.calibration.length)
        let graph = try DependencyGraphBuilder().build(model: model)
        let range = try layerRange(recipe.prune?.layers ?? "all", layerCount: model.config.layerCount)
        let ranked = StructuredPruner.rankedGroups(graph, layers: range)
        let set = scoring.needs.readsCalibration ? try calibrationSet(c.calibration, tokenizer: m.tokenizer) : nil
        let prepared = try scoring.prepare(
            model: model, groups: ranked, calibration: set,
            progress: { self.progress($0, total: $1, unit: $2) })
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0) })
        var groups: [ImportanceFile.Group] = []
        // A sequential criterion (obs) scores units while the prune stage removes them: nothing to record ahead of it.
        for g in ranked where !scoring.isSequential {
            groups.append(
                ImportanceFile.Group(
                    id: g.id, kind: g.kind, layer: g.layer ?? -1, units: g.units,
                    scores: try prepared.estimator.scores(for: g, parameters: params)))
        }
        let file = ImportanceFile(
            criterion: c.criterion.rawValue, aggregation: c.aggregation.rawValue, layers: [range.lowerBound, range.upperBound],
            groups: groups,
            calibration: set.map {
                .init(
                    windows: $0.windows, length: $0.length, offset: $0.offset, file: c.calibration.file ?? recipe.datasetPath("wikitext2"))
            },
            calibrationLoss: prepared.loss)
        try Self.write(file, to: dir + "/importance.json")
        importancePath = dir + "/importance.json"
        current = nil  // gradients and frozen flags stay behind; the next stage loads a clean copy
        var s = StageSummary.Fields()
        s.criterion = c.criterion.rawValue
        s.groups = groups.count
        s.calibrationLoss = prepared.loss
        return Outcome(status: .ran, summary: StageSummary(s))
    }

    // MARK: prune

    func runPrune(dir: String) throws -> Outcome {
        let c = recipe.prune!
        guard let importancePath, let ic = recipe.importance,
            let importance = try Self.read(ImportanceFile.self, from: importancePath)
        else {
            throw PipelineError("the prune stage needs the importance stage's scores")
        }
        let sequential = ic.criterion.needs(ic.criterionOptions).contains(.sequential)
        let imp = sequential ? nil : PrecomputedImportance(file: importance, source: importancePath)
        let m = try freshModel()
        let model = m.model
        let range = try layerRange(c.layers, layerCount: model.config.layerCount)
        let graph = try DependencyGraphBuilder().build(model: model)
        let before = model.parameterCount
        let nonEmbedding = before - model.config.vocabSize * model.config.hiddenSize
        let beforeConfig = model.config
        var execution = PruneExecution(pruner: StructuredPruner(ratio: c.ratio, layers: range, mode: c.mode, roundTo: c.roundTo))
        execution.compensate = c.compensate ?? sequential
        execution.merge = c.merge == "kmeans" ? .kmeans : .remove
        execution.obsStep = ic.criterionOptions.obsStep
        execution.seed = recipe.seed
        var search: [String: Double]?
        if c.allocation == "search", let imp {
            let windows = c.searchWindows ?? 4, offset = c.searchOffset ?? 40960
            let path = recipe.datasetPath("wikitext2")
            let all = try tokens(path, m.tokenizer)
            guard offset + windows * 512 <= all.count else {
                throw PipelineError("\(path): search_windows \(windows) × 512 from token \(offset) run past its \(all.count) tokens")
            }
            let reward = Array(all[offset..<(offset + windows * 512)])
            let evaluations = c.searchEvaluations ?? 40
            let (shares, summary, result) = try execution.searchShares(
                model: model, graph: graph, scores: imp.scores, windows: windows, evaluations: evaluations, offset: offset,
                progress: progress("layer-ratio search", total: evaluations, unit: "candidates")
            ) { try PerplexityEvaluator(window: 512, maxWindows: windows).evaluate($0, tokens: reward).ppl }
            execution.pruner.layerShares = shares
            search = summary
            log(String(format: "  layer-ratio search: reward ppl %.4f (uniform %.4f)", result.fitness, result.uniformFitness))
        }
        let set = sequential || execution.compensate ? try calibrationSet(ic.calibration, tokenizer: m.tokenizer) : nil
        let bar =
            set == nil
            ? nil : progress(execution.compensate ? "obs prune + update" : "obs prune", total: model.config.layerCount, unit: "layers")
        let removals = try execution.run(model: model, graph: graph, estimator: imp, calibration: set, progress: bar)
        let calibrationInfo = importance.calibration.map { ["windows": $0.windows, "length": $0.length, "offset": $0.offset] }
        var plan = PruningPlan(
            ratio: c.ratio, layers: Array(range), mode: execution.modeLabel, importance: importance.criterion,
            aggregation: importance.aggregation, calibration: calibrationInfo, calibrationLoss: importance.calibrationLoss,
            parametersBefore: before, parametersAfter: model.parameterCount, nonEmbeddingBefore: nonEmbedding, removals: removals)
        plan.layerShares = execution.pruner.layerShares.map { Dictionary(uniqueKeysWithValues: $0.map { (String($0.key), $0.value) }) }
        plan.search = search
        try Checkpoint.save(
            model: model, tokenizerMetadata: m.metadata, to: dir + "/model", extraFiles: ["pruning.json": try Self.jsonEncoder.encode(plan)]
        )
        modelPath = dir + "/model"
        prunedPath = modelPath
        currentPath = modelPath
        let removed = before - model.parameterCount
        log(
            String(
                format: "  parameters %@ → %@ (%.2f%% of non-embedding removed)", before.formatted(), model.parameterCount.formatted(),
                100 * Double(removed) / Double(nonEmbedding)))
        var s = StageSummary.Fields()
        s.paramsBefore = before
        s.params = model.parameterCount
        s.paramsAfter = model.parameterCount
        s.removedFractionNonEmbedding = Double(removed) / Double(nonEmbedding)
        s.before = LayerShapes(beforeConfig)
        s.after = LayerShapes(model.config)
        return Outcome(status: .ran, summary: StageSummary(s))
    }
}
