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

    /// Trains from the trainer's step to the request's last (or until `maxSeconds`), checkpointing into `directory`,
    /// then writes the adapters and the loss curve there.
    public func train(_ trainer: LoRATrainer, directory: String) throws {
        output.log(
            "  LoRA r=\(request.lora.rank) α=\(request.lora.alpha) on \(trainer.model.adapters.count) linears: "
                + "\(trainer.trainableCount.formatted()) trainable parameters; starting at step \(trainer.step)")
        let bar = output.progress("finetune", total: request.training.steps, unit: "steps")
        bar.advance(by: trainer.step)
        try trainer.run(directory: directory, maxSeconds: request.maxSeconds, progress: bar)
        try trainer.saveAdapters(directory: directory)
        try trainer.saveLossCurve(directory: directory)
    }
}
