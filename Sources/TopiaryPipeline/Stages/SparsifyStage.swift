import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import TopiaryRecover
import TopiaryTokenizers

/// Unstructured or N:M sparsity of every layer's linears.
struct SparsifyStage: PipelineStage {
    static let name = "sparsify"
    static func note(_ summary: StageSummary) -> String {
        "\(summary.fields.method ?? "?"): " + String(format: "%.2f%% zeros", 100 * (summary.fields.achievedSparsity ?? 0))
    }

    static func read(_ s: inout MappingReader, _ context: RecipeContext) throws -> any StageConfiguration {
        var c = SparsifyConfig()
        if let v = try s.choice("method", SparsifyMethod.allCases.map(\.rawValue)) { c.method = SparsifyMethod(rawValue: v)! }
        c.sparsity = try s.double("sparsity") ?? c.sparsity
        c.nm = try s.string("nm")
        if c.nm != nil, s.keys.contains("sparsity") {
            throw s.error(
                at: s.value("nm"), "stages.sparsify: `sparsity` and `nm` both set how many weights go; give one (nm 2:4 zeroes half)")
        }
        c.allocation = try s.choice("allocation", Recipe.allocations) ?? c.allocation
        c.epsilon = try s.double("epsilon") ?? c.epsilon
        if let v = try s.choice("alpha_tail", LayerAllocation.TailStart.allCases.map(\.rawValue)) {
            c.alphaTail = LayerAllocation.TailStart(rawValue: v)
        }
        c.owlM = try s.double("owl_m") ?? c.owlM
        c.owlLambda = try s.double("owl_lambda") ?? c.owlLambda
        c.trueSequential = try s.bool("true_sequential")
        c.gamma = try s.double("gamma")
        c.seed = UInt64(try s.int("seed", range: 0...Int.max) ?? Int(context.seed))
        c.calibration = try context.calibration(&s, c.calibration)
        try context.validated(name) { try c.validate() }
        return c
    }

    static func inputFiles(_ recipe: Recipe) -> [String] {
        guard let s = recipe.sparsify, s.readsCalibration else { return [] }
        return [s.calibration.file ?? recipe.datasetPath("wikitext2")]
    }

    static func run(_ pipeline: Pipeline, dir: String, continuing: Bool) throws -> Pipeline.Outcome { try pipeline.runSparsify(dir: dir) }
    static func adopt(_ pipeline: Pipeline, dir: String) { pipeline.adoptModel(dir + "/model", pruned: true) }
}

extension Pipeline {
    func runSparsify(dir: String) throws -> Outcome {
        let workflow = try SparsifyWorkflow(recipe.sparsify!, output: WorkflowOutput(showProgress: showProgress, log: log))
        let m = try freshModel()
        try workflow.checkSizes(m)
        let model = m.model
        let set = workflow.request.readsCalibration ? try calibrationSet(workflow.request.calibration, tokenizer: m.tokenizer) : nil
        let record = try workflow.run(model: model, calibration: set)
        try Checkpoint.save(
            model: model, tokenizerMetadata: m.metadata, to: dir + "/model",
            extraFiles: ["sparsify.json": try Self.jsonEncoder.encode(record)])
        modelPath = dir + "/model"
        prunedPath = modelPath
        currentPath = modelPath
        var f = StageSummary.Fields()
        f.method = record.method
        f.sparsity = record.sparsity
        f.achievedSparsity = record.achievedSparsity
        f.allocation = record.allocation
        f.nm = record.nm
        f.layerSparsity = record.layerSparsity
        f.layerStatistics = record.layerStatistics
        f.params = model.parameterCount
        return Outcome(status: .ran, summary: StageSummary(f))
    }
}
