import Foundation
import TopiaryCore
import TopiaryExport
import TopiaryGGUF
import TopiaryGraph
import TopiaryModels
import TopiaryPrune

/// What a streamed prune wrote.
public struct StreamedPruneResult {
    public var plan: PruningPlan
    /// The pruned model's shapes (the model in memory keeps the source's).
    public var config: ModelConfig
    public var report: ExportReport
}

extension PruneWorkflow {
    /// Whether a streamed model (weights read from their file layer by layer) can be pruned by this request: only what
    /// one layer's weights and first-order gradients give can be scored, and no OBS update.
    public func checkStreamable() throws {
        let options = request.importance.criterionOptions
        guard request.importance.needs.isSubset(of: .gradients) && request.prune.compensate != true else {
            let streamable = Criteria.names.filter { ImportanceCriterion(rawValue: $0)!.needs(options).isSubset(of: .gradients) }
            throw RequestError(
                key: "importance.criterion", value: nil,
                rule: "{importance.criterion} \(request.importance.criterion.rawValue)"
                    + (request.prune.compensate == true ? " with {prune.compensate}" : "")
                    + " is not available for a streamed model (use \(streamable.joined(separator: ", ")))")
        }
        try Require.that(
            !request.prune.searches && !request.prune.mergesByKMeans, "prune", nil,
            "a streamed model is pruned with {prune.allocation} uniform and {prune.merge} remove")
        try Require.that(
            !request.prune.removesBlocks, "prune.blocks", request.prune.blocks,
            "removes whole blocks, which a streamed model cannot do (its blocks are scored on the whole model): load it whole")
    }

    /// Prunes a streamed model into the GGUF file `out`: scores computed one layer at a time (Taylor gradients by
    /// `Calibration.layerwiseGradients`), the plan made from shapes, and the pruned model written tensor by tensor.
    /// `calibration` gives the windows when the criterion needs gradients.
    public func pruneStreamed(
        _ loaded: LoadedModel, layers range: ClosedRange<Int>, calibration: () throws -> CalibrationSet, to out: String,
        type: GGUFExportType
    ) throws -> StreamedPruneResult {
        try checkStreamable()
        let model = loaded.model
        guard let store = model.store else { throw PipelineError("\(loaded.source): not a streamed model") }
        let c = request.importance
        let graph = try DependencyGraphBuilder().build(model: model)
        let ranked = StructuredPruner.rankedGroups(graph, layers: range)
        let byLayer = Dictionary(grouping: ranked, by: { $0.layer! })
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0) })
        let estimator = CriterionEstimator(criterion: c.criterion, aggregation: c.aggregation, options: c.criterionOptions)
        var scores: [Int: [Double]] = [:]
        func score(_ l: Int) throws { for g in byLayer[l] ?? [] { scores[g.id] = try estimator.scores(for: g, parameters: params) } }
        var loss: Double?
        var calibrationInfo: [String: Int]?
        if c.needs.contains(.gradients) {
            let set = try calibration()
            calibrationInfo = set.summary
            Calibration.restrictGradients(model, to: Calibration.parameterNames(of: ranked))
            loss = try Calibration.layerwiseGradients(
                model, set,
                progress: output.progress(
                    "calibration (layer by layer: forward, then backward)", total: 2 * model.layers.count, unit: "layer passes")
            ) { l in try score(l) }
        } else {
            let bar = output.progress("scoring", total: range.count, unit: "layers")
            for l in range {
                try store.use(layer: l)
                try score(l)
                bar.advance()
            }
            bar.finish()
        }
        store.releaseLayers()
        let before = model.parameterCount
        let nonEmbedding = before - model.config.vocabSize * model.config.hiddenSize
        let p = request.prune
        var pruner = StructuredPruner(ratio: p.ratio, layers: range, mode: p.mode, roundTo: p.roundTo)
        pruner.rounding = p.rounding ?? .nearest
        let removals = try pruner.plan(model: model, graph: graph, estimator: PrecomputedScores(scores))
        let removed = try StructuredPruner.removedIndices(removals, graph: graph)
        let config = try StructuredPruner.prunedConfig(model, removed: removed)
        let after = model.parameters.reduce(0) { total, p in
            var shape = p.shape
            for (axis, indices) in removed[p.name] ?? [:] { shape[axis] -= indices.count }
            return total + shape.reduce(1, *)
        }
        let bar = output.progress("writing \(out)", total: model.layers.count, unit: "layers")
        var written = -1
        let report = try GGUFExporter.exportStreamed(
            model: model, config: config, sourceMetadata: loaded.metadata, to: out, options: GGUFExportOptions(type: type),
            prepareLayer: { l in
                try store.use(layer: l)
                if l != written {
                    written = l
                    bar.advance()
                }
            },
            changed: { removed[$0.name] != nil },
            tensor: { p, _ in StructuredPruner.slice(p.value, removing: removed[p.name] ?? [:]) })
        bar.finish()
        let plan = PruningPlan(
            ratio: p.ratio, layers: Array(range), mode: p.mode.rawValue, importance: c.criterion.rawValue,
            aggregation: c.aggregation.rawValue, calibration: calibrationInfo, calibrationLoss: loss,
            parametersBefore: before, parametersAfter: after, nonEmbeddingBefore: nonEmbedding, removals: removals)
        return StreamedPruneResult(plan: plan, config: config, report: report)
    }
}
