import ArgumentParser
import Foundation
import TopiaryCore
import TopiaryEval
import TopiaryModels
import TopiaryRecover

extension LRSchedule: ExpressibleByArgument {}

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Recover a (pruned) model with LoRA: train low-rank adapters on text, optionally merge them.",
        discussion: """
            Step s trains on the batch·length tokens that follow --data-offset + s·batch·length in the tokenized file \
            (consecutive windows, wrapping around). Adapters (PEFT names), the optimiser state and the run's position are \
            checkpointed atomically to OUT/checkpoint every --save-every steps; --resume continues exactly where a killed \
            run stopped. Outputs: OUT/adapter_model.safetensors + adapter_config.json, OUT/loss.csv, OUT/loss.svg and, \
            with --merge, the merged model in OUT/model/ (loads with --model).

            Example: topiary finetune --model checkpoints/smollm2-p20 --out checkpoints/smollm2-p20-lora \\
                       --data ../shared/data/wikitext-2-raw/test.txt --data-offset 32768 --steps 213 --merge
            """)

    @OptionGroup var modelArguments: ModelArguments
    @Option(help: ArgumentHelp("Output directory.", valueName: "dir")) var out: String
    @Option(
        help: ArgumentHelp(
            "Training data: a text file, or Alpaca JSON (array or JSON Lines of {instruction, input, output}) with --format alpaca.",
            valueName: "path")) var data: String
    @Option(help: "text (consecutive windows of the file) or alpaca (one example per window, Alpaca prompt template, right-padded).")
    var format: String = "text"
    @Flag(name: .customLong("train-on-inputs"), help: "Alpaca: train on the prompt tokens too (default: only on the response).")
    var trainOnInputs = false
    @Option(
        name: .customLong("data-offset"),
        help: ArgumentHelp(
            "Token offset of the first training window (default: 32768, past the 64 × 512 evaluation windows, when --data is "
                + "WikiText-2 or PTB test; 0 otherwise).")
    )
    var dataOffset: Int?
    @Option(help: "LoRA rank r.") var rank: Int = 8
    @Option(help: "LoRA alpha (scale α/r).") var alpha: Float = 16
    @Option(help: "Dropout on the adapters' input.") var dropout: Float = 0.05
    @Option(help: "Adapted modules (q,k,v,o,gate,up,down or weight-name substrings).") var targets: String = "q,k,v,o,gate,up,down"
    @Option(help: "Learning rate.") var lr: Float = 1e-4
    @Option(help: "Learning-rate schedule.") var schedule: LRSchedule = .constant
    @Option(help: "Linear warm-up steps.") var warmup: Int = 0
    @Option(name: .customLong("weight-decay"), help: "AdamW weight decay.") var weightDecay: Float = 0
    @Option(name: .customLong("clip"), help: "Clip the global gradient norm to this (0: off).") var clip: Float = 0
    @Option(help: "Windows per batch.") var batch: Int = 4
    @Option(help: "Tokens per window.") var length: Int = 128
    @Option(help: "Micro-batches per optimiser step.") var accumulation: Int = 1
    @Option(help: "Optimiser steps.") var steps: Int = 100
    @Option(name: .customLong("max-seconds"), help: "Stop after this much wall time (checkpointed).") var maxSeconds: Double?
    @Option(name: .customLong("save-every"), help: "Checkpoint every N steps.") var saveEvery: Int = 50
    @Option(name: .customLong("eval-every"), help: "Validation loss every N steps (0: never).") var evalEvery: Int = 50
    @Option(
        name: .customLong("val-windows"),
        help: "Validation windows taken from the end of the text; with --format alpaca, examples held out (seeded split).") var valWindows:
        Int = 4
    @Option(help: "Random seed (adapter init, dropout).") var seed: UInt64 = 0
    @Flag(help: "Fold the adapters into the weights and save OUT/model/.") var merge = false
    @Flag(help: "Continue from OUT/checkpoint.") var resume = false

    func validate() throws {
        guard rank >= 1 else { throw ValidationError("--rank must be at least 1") }
        guard dropout >= 0 && dropout < 1 else { throw ValidationError("--dropout must be in [0, 1)") }
        guard lr > 0 else { throw ValidationError("--lr must be positive") }
        guard batch >= 1, length >= 2, accumulation >= 1, steps >= 1 else {
            throw ValidationError("--batch, --accumulation and --steps must be ≥ 1 and --length ≥ 2")
        }
        guard (dataOffset ?? 0) >= 0 else { throw ValidationError("--data-offset must be ≥ 0") }
        guard format == "text" || format == "alpaca" else { throw ValidationError("--format \(format): expected text or alpaca") }
    }

    func run() throws {
        try reportingErrors {
            try OutputLocation.checkWritable(out, as: .directory)
            // The training data is read before the model: a bad file fails at once.
            let records = format == "alpaca" ? try AlpacaData.read(path: data) : nil
            let text = format == "alpaca" ? "" : try readText(data)
            let loaded = try modelArguments.load()
            let model = loaded.model
            try ResourceCheck.sequence(length, what: "--length \(length)", config: model.config, model: loaded.source)
            try ResourceCheck.memory(
                ResourceCheck.trainingBytes(model.config, batch: batch, length: length),
                what: "a training step of --batch \(batch) × --length \(length) tokens")
            var l = LoRAConfig()
            l.rank = rank
            l.alpha = alpha
            l.dropout = dropout
            l.targets = targets.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            var c = TrainingConfig()
            c.learningRate = lr
            c.schedule = schedule
            c.warmupSteps = warmup
            c.weightDecay = weightDecay
            c.maxGradNorm = clip
            c.batchSize = batch
            c.length = length
            c.accumulation = accumulation
            c.steps = steps
            c.dataOffset = dataOffset ?? TrainingConfig.defaultDataOffset(evaluationText: PerplexityDataset.isEvaluationText(data))
            c.validationWindows = valWindows
            c.evaluateEvery = evalEvery
            c.saveEvery = saveEvery
            c.seed = seed
            let trainer: LoRATrainer
            if let records {
                let examples = AlpacaData.tokenize(records, tokenizer: loaded.tokenizer, maxLength: length, trainOnInputs: trainOnInputs)
                let (train, validation) = AlpacaData.split(examples, validation: valWindows, seed: seed)
                trainer = try LoRATrainer(
                    model: model, lora: l, config: c, examples: train, validation: validation,
                    padID: Int32(loaded.tokenizer.eosTokenID ?? 0))
                FileHandle.standardError.write(
                    Data(
                        ("\(data): \(records.count) Alpaca records → \(trainer.examples.count) training, "
                            + "\(trainer.validationExamples.count) validation examples\n")
                            .utf8))
            } else {
                let tokens = loaded.tokenizer.encode(text, addSpecialTokens: false, parseSpecial: false).map(Int32.init)
                trainer = try LoRATrainer(model: model, lora: l, config: c, tokens: tokens)
            }
            if resume {
                try trainer.resume(directory: out)
            } else if FileManager.default.fileExists(atPath: out + "/checkpoint") {
                throw CLIError("\(out) already holds a run; pass --resume to continue it or choose another --out")
            }
            FileHandle.standardError.write(
                Data(
                    ("LoRA r=\(rank) α=\(alpha) on \(model.adapters.count) linears: \(trainer.trainableCount.formatted()) trainable "
                        + "parameters; starting at step \(trainer.step)\n")
                        .utf8))
            let bar = ProgressBar("finetune", total: steps, unit: "steps")
            bar.advance(by: trainer.step)
            try trainer.run(directory: out, maxSeconds: maxSeconds, progress: bar)
            try trainer.saveAdapters(directory: out)
            try trainer.saveLossCurve(directory: out)
            if merge {
                trainer.merge()
                try Checkpoint.save(model: model, tokenizerMetadata: loaded.metadata, to: out + "/model")
            }
            let last = trainer.history.last
            print(
                String(
                    format: "step %d, loss %.4f%@; outputs in %@", trainer.step, last?.loss ?? .nan,
                    trainer.validation.last.map { String(format: ", validation loss %.4f", $0.loss) } ?? "", out))
        }
    }
}
