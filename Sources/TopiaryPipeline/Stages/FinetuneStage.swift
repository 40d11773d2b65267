import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import TopiaryRecover
import TopiaryTokenizers

/// LoRA recovery: adapters trained on a text (or Alpaca examples), left unmerged for the merge stage.
struct FinetuneStage: PipelineStage {
    static let name = "finetune"
    static func note(_ summary: StageSummary) -> String {
        let s = summary.fields
        return "\(PipelineStages.number(s.steps)) steps" + (PipelineStages.decimal(s.loss).map { ", loss \($0)" } ?? "")
            + (PipelineStages.decimal(s.validationLoss).map { ", validation \($0)" } ?? "")
    }

    static func read(_ s: inout MappingReader, _ context: RecipeContext) throws -> any StageConfiguration {
        var c = FinetuneConfig()
        try readTraining(&s, context, into: &c)
        try context.validated(name) { try c.validate() }
        return c
    }

    /// The keys a finetune and a distill stage share: data, LoRA and optimiser settings.
    static func readTraining(_ s: inout MappingReader, _ context: RecipeContext, into c: inout FinetuneConfig) throws {
        if let d = try s.string("data") { c.data = FinetuneConfig.namedTexts.contains(d) ? d : context.resolve(d) }
        if context.checksFiles, !FinetuneConfig.namedTexts.contains(c.data), !FileManager.default.fileExists(atPath: c.data) {
            throw s.error(at: s.value("data"), "stages.finetune.data: \(c.data) does not exist")
        }
        // `text_format` is the command line's --text-format; `format` is its older spelling.
        c.format = try s.choice("text_format", ["text", "alpaca"]) ?? s.choice("format", ["text", "alpaca"]) ?? c.format
        c.trainOnInputs = try s.bool("train_on_inputs") ?? c.trainOnInputs
        c.useDefaultDataOffset()
        var t = c.training
        t.dataOffset = try s.int("data_offset") ?? t.dataOffset
        c.lora.rank = try s.int("rank") ?? c.lora.rank
        c.lora.alpha = Float(try s.double("alpha") ?? Double(c.lora.alpha))
        c.lora.dropout = Float(try s.double("dropout") ?? Double(c.lora.dropout))
        c.lora.targets = try s.stringList("targets") ?? c.lora.targets
        t.learningRate = Float(try s.double("lr") ?? Double(t.learningRate))
        if let v = try s.choice("schedule", LRSchedule.allCases.map(\.rawValue)) { t.schedule = LRSchedule(rawValue: v)! }
        t.warmupSteps = try s.int("warmup") ?? t.warmupSteps
        t.weightDecay = Float(try s.double("weight_decay") ?? Double(t.weightDecay))
        t.maxGradNorm = Float(try s.double("clip") ?? Double(t.maxGradNorm))
        t.batchSize = try s.int("batch") ?? t.batchSize
        t.length = try s.int("length") ?? t.length
        t.accumulation = try s.int("accumulation") ?? t.accumulation
        t.steps = try s.int("steps") ?? t.steps
        t.saveEvery = try s.int("save_every") ?? t.saveEvery
        t.evaluateEvery = try s.int("eval_every") ?? t.evaluateEvery
        t.validationWindows = try s.int("val_windows") ?? t.validationWindows
        t.seed = UInt64(try s.int("seed", range: 0...Int.max) ?? Int(context.seed))
        c.maxSeconds = try s.double("max_seconds")
        c.training = t
    }

    static func inputFiles(_ recipe: Recipe) -> [String] { recipe.finetune.map { [$0.dataPath(folder: recipe.data)] } ?? [] }

    static func run(_ pipeline: Pipeline, dir: String, continuing: Bool) throws -> Pipeline.Outcome {
        try pipeline.runTraining(pipeline.recipe.finetune!, dir: dir, continuing: continuing)
    }

    static func adopt(_ pipeline: Pipeline, dir: String) {
        pipeline.adaptersPath = dir
        pipeline.current = nil
    }
}

extension Pipeline {
    /// A finetune or distill stage: adapters trained on the current model (with the teacher's targets when distilling).
    func runTraining(_ request: FinetuneConfig, dir: String, continuing: Bool) throws -> Outcome {
        let workflow = try FinetuneWorkflow(request, output: WorkflowOutput(showProgress: showProgress, log: log))
        let c = workflow.request
        let m = try freshModel()
        try workflow.checkSizes(m)
        let trainer = try workflow.trainer(
            model: m.model, tokenizer: m.tokenizer, path: c.dataPath(folder: recipe.data), tokens: { try self.tokens($0, m.tokenizer) })
        if c.distillation != nil {
            let teacher = try ModelLoader.load(path: c.teacher ?? recipe.model)
            try workflow.checkTeacherSize(teacher, student: m)
            try workflow.attachTeacher(trainer, teacher: teacher, defaultCache: dir + "/teacher-cache")
        }
        var status = StageStatus.ran
        if continuing && FileManager.default.fileExists(atPath: dir + "/checkpoint/manifest.json") {
            try trainer.resume(directory: dir)
            status = .resumed
            log("  resuming at step \(trainer.step) of \(c.training.steps)")
        }
        try workflow.train(trainer, directory: dir)
        adaptersPath = dir
        currentPath = nil  // the model in memory now carries adapters
        var f = StageSummary.Fields()
        f.steps = trainer.step
        f.trainableParams = trainer.trainableCount
        f.loss = trainer.history.last?.loss
        f.firstLoss = trainer.history.first?.loss
        f.validationLoss = trainer.validation.last?.loss
        return Outcome(status: status, summary: StageSummary(f))
    }
}
