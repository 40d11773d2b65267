import ArgumentParser
import Foundation
import TopiaryCore
import TopiaryEval
import TopiaryModels
import TopiaryPipeline
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
                       --text ../shared/data/wikitext-2-raw/test.txt --data-offset 32768 --steps 213 --merge
            """)

    @OptionGroup var options: TrainingOptions

    func validate() throws {
        try usage(.finetune) { try options.request(FinetuneConfig()).validate() }
    }

    func run() throws { try options.run(options.request(FinetuneConfig())) }
}

/// The options a finetune and a distill run share: data, LoRA and optimiser settings, outputs.
struct TrainingOptions: ParsableArguments {
    /// The optimiser settings a distill request starts from (shown in the help).
    static let distill = FinetuneConfig.distillation().training

    @OptionGroup var modelArguments: ModelArguments
    @OptionGroup var dataArguments: DataArguments
    @Option(help: ArgumentHelp("Output directory.", valueName: "dir")) var out: String
    @Option(
        help: ArgumentHelp(
            "Training text (default: wikitext2): a file, or wikitext2 / ptb for the test text under --data; with --text-format alpaca, "
                + "an Alpaca JSON "
                + "file (array or JSON Lines of {instruction, input, output}).",
            valueName: "path")) var text: String?
    @Option(
        name: .customLong("text-format"),
        help: "text (consecutive windows of the file) or alpaca (one example per window, Alpaca prompt template, right-padded).")
    var textFormat: String?
    @Option(name: .customLong("format"), help: .hidden) var formatAlias: String?
    @Flag(name: .customLong("train-on-inputs"), help: "Alpaca: train on the prompt tokens too (default: only on the response).")
    var trainOnInputs = false
    @Option(
        name: .customLong("data-offset"),
        help: ArgumentHelp(
            "Token offset of the first training window (default: 32768, past the 64 × 512 evaluation windows, when the text is "
                + "WikiText-2 or PTB test; 0 otherwise).")
    )
    var dataOffset: Int?
    @Option(help: "LoRA rank r.") var rank: Int = LoRAConfig().rank
    @Option(help: "LoRA alpha (scale α/r).") var alpha: Float = LoRAConfig().alpha
    @Option(help: "Dropout on the adapters' input.") var dropout: Float = LoRAConfig().dropout
    @Option(help: "Adapted modules (q,k,v,o,gate,up,down or weight-name substrings).") var targets: String = LoRAConfig().targets.joined(
        separator: ",")
    @Option(help: "Learning rate (default: finetune \(FinetuneConfig().training.learningRate), distill \(Self.distill.learningRate)).")
    var lr: Float?
    @Option(help: "Learning-rate schedule (default: finetune \(FinetuneConfig().training.schedule), distill \(Self.distill.schedule)).")
    var schedule: LRSchedule?
    @Option(help: "Linear warm-up steps (default: finetune \(FinetuneConfig().training.warmupSteps), distill \(Self.distill.warmupSteps)).")
    var warmup: Int?
    @Option(name: .customLong("weight-decay"), help: "AdamW weight decay.") var weightDecay: Float = TrainingConfig().weightDecay
    @Option(name: .customLong("clip"), help: "Clip the global gradient norm to this (0: off).") var clip: Float = TrainingConfig()
        .maxGradNorm
    @Option(help: "Windows per batch.") var batch: Int = TrainingConfig().batchSize
    @Option(help: "Tokens per window.") var length: Int = TrainingConfig().length
    @Option(help: "Micro-batches per optimiser step.") var accumulation: Int = TrainingConfig().accumulation
    @Option(help: "Optimiser steps.") var steps: Int = TrainingConfig().steps
    @Option(name: .customLong("max-seconds"), help: "Stop after this much wall time (checkpointed).") var maxSeconds: Double?
    @Option(name: .customLong("save-every"), help: "Checkpoint every N steps (0: only at the end).") var saveEvery: Int = TrainingConfig()
        .saveEvery
    @Option(name: .customLong("eval-every"), help: "Validation loss every N steps (0: never).") var evalEvery: Int = TrainingConfig()
        .evaluateEvery
    @Option(
        name: .customLong("val-windows"),
        help: "Validation windows taken from the end of the text; with --text-format alpaca, examples held out (seeded split).")
    var valWindows: Int = TrainingConfig().validationWindows
    @Option(help: "Random seed (adapter init, dropout).") var seed: UInt64 = TrainingConfig().seed
    @Flag(help: "Fold the adapters into the weights and save OUT/model/.") var merge = false
    @Flag(help: "Continue from OUT/checkpoint.") var resume = false

    /// The training text: --text, or a file given to --data (the older spelling of --text).
    var trainingText: String {
        if let text { return text }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: dataArguments.data, isDirectory: &isDirectory), !isDirectory.boolValue {
            return dataArguments.data
        }
        return FinetuneConfig().data
    }

    /// The request the options describe onto `base` (a recipe's finetune or distill stage decodes the same one).
    func request(_ base: FinetuneConfig) -> FinetuneConfig {
        var c = base
        c.data = trainingText
        c.format = textFormat ?? formatAlias ?? c.format
        c.trainOnInputs = trainOnInputs
        c.useDefaultDataOffset()
        c.lora.rank = rank
        c.lora.alpha = alpha
        c.lora.dropout = dropout
        c.lora.targets = targets.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        var t = c.training
        t.dataOffset = dataOffset ?? t.dataOffset
        t.learningRate = lr ?? t.learningRate
        t.schedule = schedule ?? t.schedule
        t.warmupSteps = warmup ?? t.warmupSteps
        t.weightDecay = weightDecay
        t.maxGradNorm = clip
        t.batchSize = batch
        t.length = length
        t.accumulation = accumulation
        t.steps = steps
        t.validationWindows = valWindows
        t.evaluateEvery = evalEvery
        t.saveEvery = saveEvery
        t.seed = seed
        c.training = t
        c.maxSeconds = maxSeconds
        return c
    }

    /// Trains (distilling from `teacher` when the request says so) and writes the outputs.
    func run(_ request: FinetuneConfig, teacher: String? = nil) throws {
        try reportingErrors {
            if text == nil && !FileManager.default.fileExists(atPath: dataArguments.data) {
                throw CLIError("\(dataArguments.data): no such file or folder (--data is the data folder; the training text is --text)")
            }
            let workflow = try FinetuneWorkflow(request)
            if let teacher, !FileManager.default.fileExists(atPath: teacher) {
                throw CLIError("--teacher \(teacher): no such file or folder (a GGUF file or a Topiary checkpoint folder)")
            }
            let path = workflow.request.dataPath(folder: dataArguments.data)
            try OutputLocation.checkWritable(out, as: .directory)
            if !resume && FileManager.default.fileExists(atPath: out + "/checkpoint") {
                throw CLIError("\(out) already holds a run; pass --resume to continue it or choose another --out")
            }
            // The training data is read before the model: a bad file fails at once.
            if workflow.request.format == "alpaca" { _ = try AlpacaData.read(path: path) } else { _ = try readText(path) }
            let loaded = try modelArguments.load()
            let model = loaded.model
            try workflow.checkSizes(loaded)
            let trainer = try workflow.trainer(
                model: model, tokenizer: loaded.tokenizer, path: path,
                tokens: { try TokenizedText.read($0, data: dataArguments.data, tokenizer: loaded.tokenizer).tokens })
            if let teacher {
                let t = try ModelLoader.load(path: teacher)
                try workflow.checkTeacherSize(t, student: loaded)
                try workflow.attachTeacher(trainer, teacher: t, defaultCache: out + "/teacher-cache")
            }
            if resume { try trainer.resume(directory: out) }
            try workflow.train(trainer, directory: out)
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
