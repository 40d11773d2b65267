import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import TopiaryRecover
import TopiaryTokenizers

/// Scores the coupled groups by a criterion (`importance.json`), for the prune stage.
struct ImportanceStage: PipelineStage {
    static let name = "importance"
    static func note(_ summary: StageSummary) -> String {
        let s = summary.fields
        // A sequential criterion (obs) scores nothing ahead: it chooses units layer by layer during the prune.
        if s.groups == 0 { return "\(s.criterion ?? "?"): units chosen layer by layer during the prune" }
        return "\(s.criterion ?? "?") over \(PipelineStages.number(s.groups)) groups"
            + (PipelineStages.decimal(s.calibrationLoss).map { ", calibration loss \($0)" } ?? "")
    }

    static func read(_ s: inout MappingReader, _ context: RecipeContext) throws -> any StageConfiguration {
        var c = ImportanceConfig()
        if let v = try s.choice("criterion", ImportanceCriterion.allCases.map(\.rawValue)) {
            c.criterion = ImportanceCriterion(rawValue: v)!
        }
        if let v = try s.choice("aggregation", Aggregation.allCases.map(\.rawValue)) { c.aggregation = Aggregation(rawValue: v)! }
        c.seed = UInt64(try s.int("seed", range: 0...Int.max) ?? Int(context.seed))
        var o = CriterionOptions()
        if let v = try s.double("lambda") { o.lambda = v }
        if let v = try s.int("taylor_order") { o.taylorOrder = v }
        if let v = try s.int("vd_steps") { o.vdSteps = v }
        if let v = try s.int("vd_windows") { o.vdWindows = v }
        if let v = try s.double("vd_lr") { o.vdLearningRate = v }
        if let v = try s.double("vd_kl_weight") { o.vdKLWeight = v }
        if let v = try s.int("obs_step") { o.obsStep = v }
        c.setOptions(o)
        c.calibration = try context.calibration(&s, ImportanceConfig.defaultCalibration(for: c.criterion))
        try context.validated(name) { try c.validate() }
        return c
    }

    static func inputFiles(_ recipe: Recipe) -> [String] {
        guard let i = recipe.importance, i.needs.readsCalibration else { return [] }
        return [i.calibration.file ?? recipe.datasetPath("wikitext2")]
    }

    /// Gradients are only needed for the layers that the prune stage ranks.
    static func keyConfiguration(_ recipe: Recipe) throws -> String {
        try json(ImportanceKey(importance: recipe.importance!, layers: recipe.prune?.layers ?? "all"))
    }

    struct ImportanceKey: Encodable {
        let importance: ImportanceConfig
        let layers: String
    }

    static func run(_ pipeline: Pipeline, dir: String, continuing: Bool) throws -> Pipeline.Outcome {
        try pipeline.runImportance(dir: dir)
    }

    static func adopt(_ pipeline: Pipeline, dir: String) { pipeline.importancePath = dir + "/importance.json" }
}

extension Pipeline {
    /// The prune workflow of the recipe's importance and prune stages (an importance stage alone ranks every layer).
    func pruneWorkflow() throws -> PruneWorkflow {
        let importance = recipe.importance!
        var workflow = try PruneWorkflow(
            PruneRequest(importance: importance, prune: recipe.prune ?? PruneConfig(ratio: 0, layers: "all")),
            output: WorkflowOutput(showProgress: showProgress, log: log))
        workflow.seed = recipe.seed
        return workflow
    }

    // MARK: importance

    func runImportance(dir: String) throws -> Outcome {
        let workflow = try pruneWorkflow()
        let m = try freshModel()
        try workflow.checkSizes(m)
        let model = m.model
        // One backward over all windows follows: fault its memory in while the graph is traced and the text tokenized.
        workflow.reserveMemory(model.config)
        let range = try workflow.request.prune.layerRange(layerCount: model.config.layerCount)
        let set =
            workflow.scoringReadsCalibration ? try calibrationSet(workflow.request.importance.calibration, tokenizer: m.tokenizer) : nil
        let file = try workflow.score(model: model, layers: range, calibration: set)
        try Self.write(file, to: dir + "/importance.json")
        importancePath = dir + "/importance.json"
        current = nil  // gradients and frozen flags stay behind; the next stage loads a clean copy
        var s = StageSummary.Fields()
        s.criterion = file.criterion
        s.groups = file.groups.count
        s.calibrationLoss = file.calibrationLoss
        return Outcome(status: .ran, summary: StageSummary(s))
    }
}
