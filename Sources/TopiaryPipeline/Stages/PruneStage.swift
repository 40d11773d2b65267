import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import TopiaryRecover
import TopiaryTokenizers

/// Removes the lowest-scored units (by the importance stage's scores) and saves the smaller model.
struct PruneStage: PipelineStage {
    static let name = "prune"
    static func note(_ summary: StageSummary) -> String {
        let s = summary.fields
        return "params \(s.paramsBefore?.formatted() ?? "?") → \(s.paramsAfter?.formatted() ?? "?")"
            + (s.removedFractionNonEmbedding.map { String(format: " (%.2f%% of non-embedding removed)", 100 * $0) } ?? "")
    }

    static func read(_ s: inout MappingReader, _ context: RecipeContext) throws -> any StageConfiguration {
        let blocks = try s.int("blocks")
        guard let ratio = try s.double("ratio") ?? (blocks != nil ? 0 : nil) else {
            throw s.error(
                at: s.node,
                "stages.prune needs `ratio` (fraction of non-embedding parameters to remove, e.g. 0.2) or `blocks` (whole blocks to remove)"
            )
        }
        var c = PruneConfig(ratio: ratio, layers: try s.string("layers") ?? "all")
        c.blocks = blocks
        if let v = try s.choice("block_criterion", BlockCriteria.names) { c.blockCriterion = BlockCriterionName(rawValue: v) }
        if let v = try s.choice("block_selection", BlockSelection.allCases.map(\.rawValue)) {
            c.blockSelection = BlockSelection(rawValue: v)
        }
        if let v = try s.choice("mode", StructuredPruner.Mode.allCases.map(\.rawValue)) { c.mode = StructuredPruner.Mode(rawValue: v)! }
        c.roundTo = try s.int("round_to") ?? c.roundTo
        if let v = try s.choice("rounding", StructuredPruner.Rounding.allCases.map(\.rawValue)) {
            c.rounding = v == "nearest" ? nil : StructuredPruner.Rounding(rawValue: v)
        }
        if let v = try s.choice("allocation", ["uniform", "search"]), v == "search" { c.allocation = v }
        c.searchEvaluations = try s.int("search_evaluations")
        c.searchWindows = try s.int("search_windows")
        c.searchOffset = try s.int("search_offset")
        if let v = try s.choice("merge", ["remove", "kmeans"]), v == "kmeans" { c.merge = v }
        c.compensate = try s.bool("compensate")
        try context.validated(name) { try c.validate() }
        return c
    }

    static func problem(in recipe: Recipe) -> String? {
        guard let p = recipe.prune else { return nil }
        guard let i = recipe.importance else { return "stage `prune` needs an `importance` stage (which criterion ranks the groups?)" }
        do { try PruneRequest(importance: i, prune: p).validate() } catch let e as RequestError {
            return e.describe(valueSeparator: " = ") { "stages." + $0 }
        } catch { return "\(error)" }
        return nil
    }

    static func inputFiles(_ recipe: Recipe) -> [String] {
        guard let p = recipe.prune else { return [] }
        var files: [String] = []
        if p.searches { files.append(recipe.datasetPath("wikitext2")) }
        // The OBS update reads the importance stage's calibration windows.
        if let i = recipe.importance, (p.compensate ?? i.isSequential) || p.removesBlocks {
            files.append(i.calibration.file ?? recipe.datasetPath("wikitext2"))
        }
        return files
    }

    static func run(_ pipeline: Pipeline, dir: String, continuing: Bool) throws -> Pipeline.Outcome { try pipeline.runPrune(dir: dir) }
    static func adopt(_ pipeline: Pipeline, dir: String) { pipeline.adoptModel(dir + "/model", pruned: true) }
}

extension Pipeline {
    func runPrune(dir: String) throws -> Outcome {
        guard let importancePath, let importance = try Self.read(ImportanceFile.self, from: importancePath) else {
            throw PipelineError("the prune stage needs the importance stage's scores")
        }
        let workflow = try pruneWorkflow()
        let m = try freshModel()
        let model = m.model
        let before = model.parameterCount
        let beforeConfig = model.config
        let set =
            workflow.pruningReadsCalibration ? try calibrationSet(workflow.request.importance.calibration, tokenizer: m.tokenizer) : nil
        let plan = try workflow.prune(
            model: model, importance: importance, source: importancePath, calibration: set,
            searchText: {
                let path = self.recipe.datasetPath("wikitext2")
                return TokenizedText(path: path, tokens: try self.tokens(path, m.tokenizer))
            })
        try Checkpoint.save(
            model: model, tokenizerMetadata: m.metadata, to: dir + "/model", extraFiles: ["pruning.json": try Self.jsonEncoder.encode(plan)]
        )
        modelPath = dir + "/model"
        prunedPath = modelPath
        currentPath = modelPath
        let removed = before - model.parameterCount
        let nonEmbedding = plan.nonEmbeddingBefore
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
