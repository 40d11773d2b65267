import Foundation
import TopiaryModels
import TopiaryRecover

extension Pipeline {
    // MARK: finetune

    func runFinetune(dir: String, continuing: Bool) throws -> Outcome {
        let c = recipe.finetune!
        let m = try freshModel()
        let model = m.model
        let dataPath = ["wikitext2", "ptb"].contains(c.data) ? recipe.datasetPath(c.data) : c.data
        let trainer: LoRATrainer
        if c.format == "alpaca" {
            let examples = AlpacaData.tokenize(
                try AlpacaData.read(path: dataPath), tokenizer: m.tokenizer, maxLength: c.training.length,
                trainOnInputs: c.trainOnInputs)
            let (train, validation) = AlpacaData.split(examples, validation: c.training.validationWindows, seed: c.training.seed)
            trainer = try LoRATrainer(
                model: model, lora: c.lora, config: c.training, examples: train, validation: validation,
                padID: Int32(m.tokenizer.eosTokenID ?? 0))
            log("  \(dataPath): \(trainer.examples.count) training and \(trainer.validationExamples.count) validation examples")
        } else {
            trainer = try LoRATrainer(model: model, lora: c.lora, config: c.training, tokens: try tokens(dataPath, m.tokenizer))
        }
        var status = StageStatus.ran
        if continuing && FileManager.default.fileExists(atPath: dir + "/checkpoint/manifest.json") {
            try trainer.resume(directory: dir)
            status = .resumed
            log("  resuming at step \(trainer.step) of \(c.training.steps)")
        }
        log(
            "  LoRA r=\(c.lora.rank) α=\(c.lora.alpha) on \(model.adapters.count) linears: \(trainer.trainableCount.formatted()) "
                + "trainable parameters"
        )
        let bar = progress("finetune", total: c.training.steps, unit: "steps")
        bar.advance(by: trainer.step)
        try trainer.run(directory: dir, maxSeconds: c.maxSeconds, progress: bar)
        try trainer.saveAdapters(directory: dir)
        try trainer.saveLossCurve(directory: dir)
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

    // MARK: merge

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
