import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import TopiaryRecover
import TopiaryTokenizers

/// Loads the recipe's model and records its shapes (always the first stage).
struct LoadStage: PipelineStage {
    static let name = "load"
    static func read(_ reader: inout MappingReader, _ context: RecipeContext) throws -> any StageConfiguration { NoSettings() }
    static func inputFiles(_ recipe: Recipe) -> [String] { [recipe.model] }
    static func keyConfiguration(_ recipe: Recipe) throws -> String { try json(["model": recipe.model]) }
    static func run(_ pipeline: Pipeline, dir: String, continuing: Bool) throws -> Pipeline.Outcome { try pipeline.runLoad(dir: dir) }
    static func adopt(_ pipeline: Pipeline, dir: String) { pipeline.modelPath = pipeline.recipe.model }
}

extension Pipeline {
    func runLoad(dir: String) throws -> Outcome {
        modelPath = recipe.model
        let m = try freshModel()
        let c = m.model.config
        var s = StageSummary.Fields()
        s.model = recipe.model
        s.params = m.model.parameterCount
        s.nonEmbeddingParams = m.model.parameterCount - c.vocabSize * c.hiddenSize
        s.config = LayerShapes(c)
        try Self.write(StageSummary(s), to: dir + "/model.json")
        return Outcome(status: .ran, summary: StageSummary(s))
    }
}
