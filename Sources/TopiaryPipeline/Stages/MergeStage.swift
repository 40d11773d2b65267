import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import TopiaryRecover
import TopiaryTokenizers

/// Folds the finetune stage's adapters into the weights and saves the model.
struct MergeStage: PipelineStage {
    static let name = "merge"
    static func note(_ summary: StageSummary) -> String { "\(PipelineStages.number(summary.fields.mergedAdapters)) adapters merged" }
    static func read(_ reader: inout MappingReader, _ context: RecipeContext) throws -> any StageConfiguration { NoSettings() }

    static func problem(in recipe: Recipe) -> String? {
        recipe.finetune == nil && recipe.distill == nil
            ? "stage `merge` needs a `finetune` or `distill` stage (there are no adapters to merge)" : nil
    }

    static func run(_ pipeline: Pipeline, dir: String, continuing: Bool) throws -> Pipeline.Outcome { try pipeline.runMerge(dir: dir) }

    static func adopt(_ pipeline: Pipeline, dir: String) {
        pipeline.adoptModel(dir + "/model", pruned: false)
        pipeline.adaptersPath = nil
    }
}

extension Pipeline {
    func runMerge(dir: String) throws -> Outcome {
        guard let adaptersPath else { throw PipelineError("the merge stage needs the finetune stage's adapters") }
        let m: LoadedModel
        if let current, currentPath == nil, !current.model.adapters.isEmpty {
            m = current
        } else {
            m = try freshModel()
            try LoRATrainer.loadAdapters(directory: adaptersPath, into: m.model)
        }
        let model = m.model
        let merged = model.adapters.count
        Self.mergeAdapters(model)
        try Checkpoint.save(model: model, tokenizerMetadata: m.metadata, to: dir + "/model")
        modelPath = dir + "/model"
        currentPath = modelPath
        self.adaptersPath = nil
        var f = StageSummary.Fields()
        f.mergedAdapters = merged
        f.params = model.parameterCount
        return Outcome(status: .ran, summary: StageSummary(f))
    }

    /// `W += (α/r)·B·A` for every adapter, then the adapters are dropped.
    static func mergeAdapters(_ model: any AdaptableModel) {
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0) })
        for (name, a) in model.adapters { if let w = params[name] { a.merge(into: w) } }
        model.adapters = [:]
        for p in model.parameters { p.requiresGrad = true }
    }
}
