import Foundation
import TopiaryRecover

/// Recovery by distillation: LoRA adapters (left unmerged for the merge stage) trained on the dense teacher's
/// next-token distributions, optionally mixed with the text's loss and hidden-state matching.
struct DistillStage: PipelineStage {
    static let name = "distill"
    static func note(_ summary: StageSummary) -> String { FinetuneStage.note(summary) }

    static func read(_ s: inout MappingReader, _ context: RecipeContext) throws -> any StageConfiguration {
        var c = FinetuneConfig.distillation()
        try FinetuneStage.readTraining(&s, context, into: &c)
        var d = c.distillation!
        if let t = try s.string("teacher") {
            c.teacher = context.resolve(t)
            if context.checksFiles, !FileManager.default.fileExists(atPath: c.teacher!) {
                throw s.error(at: s.value("teacher"), "stages.distill.teacher: \(c.teacher!) does not exist")
            }
        }
        c.teacherCache = try s.string("teacher_cache").map(context.resolve)
        d.temperature = Float(try s.double("temperature") ?? Double(d.temperature))
        d.weight = Float(try s.double("kd_weight") ?? Double(d.weight))
        d.topK = try s.int("top_k") ?? d.topK
        d.hiddenWeight = Float(try s.double("hidden_weight") ?? Double(d.hiddenWeight))
        if let layers = try s.stringList("hidden_layers") {
            d.hiddenLayers = try layers.map { item in
                guard let l = Int(item) else {
                    throw s.error(at: s.value("hidden_layers"), "stages.distill.hidden_layers: `\(item)` is not a layer index")
                }
                return l
            }
        }
        c.distillation = d
        try context.validated(name) { try c.validate() }
        return c
    }

    static func problem(in recipe: Recipe) -> String? {
        recipe.finetune != nil ? "a recipe recovers with `finetune` or with `distill`, not both (each trains the adapters)" : nil
    }

    static func inputFiles(_ recipe: Recipe) -> [String] { recipe.distill.map { [$0.dataPath(folder: recipe.data)] } ?? [] }

    static func run(_ pipeline: Pipeline, dir: String, continuing: Bool) throws -> Pipeline.Outcome {
        try pipeline.runTraining(pipeline.recipe.distill!, dir: dir, continuing: continuing)
    }

    static func adopt(_ pipeline: Pipeline, dir: String) { FinetuneStage.adopt(pipeline, dir: dir) }
}
