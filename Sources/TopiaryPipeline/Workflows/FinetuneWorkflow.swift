import Foundation
import TopiaryCore
import TopiaryModels
import TopiaryRecover
import TopiaryTokenizers

/// LoRA recovery as `topiary finetune` and a recipe's finetune stage run it: the trainer on the request's text (or
/// Alpaca examples), training with atomic checkpoints, then the adapters and the loss curve.
public struct FinetuneWorkflow {
    public let request: FinetuneConfig
    public var output: WorkflowOutput

    public init(_ request: FinetuneConfig, output: WorkflowOutput = .terminal) throws {
        try request.validate()
        self.request = request
        self.output = output
    }

    /// The window length against the model's context and a training step against the memory, before anything is
    /// allocated.
    public func checkSizes(_ loaded: LoadedModel) throws {
        let t = request.training
        try ResourceCheck.sequence(t.length, what: "--length \(t.length)", config: loaded.model.config, model: loaded.source)
        try ResourceCheck.memory(
            ResourceCheck.trainingBytes(loaded.model.config, batch: t.batchSize, length: t.length),
            what: "a training step of --batch \(t.batchSize) × --length \(t.length) tokens")
    }

    /// The trainer of `model` on the training data at `path` (`tokens` tokenizes a text file, possibly from a cache).
    public func trainer(
        model: any AdaptableModel, tokenizer: any Tokenizer, path: String, tokens: (String) throws -> [Int32]
    ) throws -> LoRATrainer {
        let c = request
        guard c.format == "alpaca" else {
            return try LoRATrainer(model: model, lora: c.lora, config: c.training, tokens: try tokens(path))
        }
        let records = try AlpacaData.read(path: path)
        let examples = AlpacaData.tokenize(records, tokenizer: tokenizer, maxLength: c.training.length, trainOnInputs: c.trainOnInputs)
        let (train, validation) = AlpacaData.split(examples, validation: c.training.validationWindows, seed: c.training.seed)
        let trainer = try LoRATrainer(
            model: model, lora: c.lora, config: c.training, examples: train, validation: validation,
            padID: Int32(tokenizer.eosTokenID ?? 0))
        output.log(
            "  \(path): \(records.count) Alpaca records → \(trainer.examples.count) training, "
                + "\(trainer.validationExamples.count) validation examples")
        return trainer
    }

    /// Makes the trainer learn from `teacher` when the request distils (the top-K cache in the request's folder or
    /// `defaultCache`).
    public func attachTeacher(_ trainer: LoRATrainer, teacher: LoadedModel, defaultCache: String) throws {
        guard let d = request.distillation else { return }
        let cache = request.teacherCache ?? defaultCache
        try trainer.distill(from: Teacher(model: teacher.model, config: d, cacheDirectory: cache))
        output.log(
            "  distilling from \(teacher.source): KL at temperature \(d.temperature)"
                + (d.weight < 1 ? " × \(d.weight) + text loss × \(1 - d.weight)" : "")
                + (d.hiddenLayers.isEmpty ? "" : " + hidden-state MSE at layers \(d.hiddenLayers.map(String.init).joined(separator: ","))")
                + (d.topK > 0 ? "; teacher top-\(d.topK) cached in \(cache)" : "; the teacher's full logits at every step"))
    }

    /// The teacher's memory next to the student's training step.
    public func checkTeacherSize(_ teacher: LoadedModel, student: LoadedModel) throws {
        guard request.distillation != nil else { return }
        let t = request.training
        // The teacher's weights and its logits (and their top-K or the full distribution held for the loss).
        let extra =
            Double(teacher.model.parameterCount) * 4 + Double(t.batchSize) * Double(t.length) * Double(teacher.model.config.vocabSize) * 8
        let total = ResourceCheck.trainingBytes(student.model.config, batch: t.batchSize, length: t.length).flatMap {
            Double($0) + extra < 9e18 ? $0 + Int(extra) : nil
        }
        try ResourceCheck.memory(
            total,
            what: "distillation of --batch \(t.batchSize) × --length \(t.length) tokens with the teacher in memory")
    }

    /// Trains from the trainer's step to the request's last (or until `maxSeconds`), checkpointing into `directory`,
    /// then writes the adapters and the loss curve there.
    public func train(_ trainer: LoRATrainer, directory: String) throws {
        output.log(
            (trainer.teacher == nil ? "" : "  student: ")
                + "LoRA r=\(request.lora.rank) α=\(request.lora.alpha) on \(trainer.model.adapters.count) linears: "
                + "\(trainer.trainableCount.formatted()) trainable parameters; starting at step \(trainer.step)")
        let bar = output.progress(trainer.teacher == nil ? "finetune" : "distill", total: request.training.steps, unit: "steps")
        bar.advance(by: trainer.step)
        try trainer.run(directory: directory, maxSeconds: request.maxSeconds, progress: bar)
        if let t = trainer.teacher, t.config.topK > 0 {
            output.log("  teacher cache: \(t.cacheHits) windows read, \(t.cacheMisses) computed")
        }
        try trainer.saveAdapters(directory: directory)
        try trainer.saveLossCurve(directory: directory)
    }
}
