import Foundation
import TopiaryEval
import TopiaryRecover

/// LoRA recovery: the finetune stage of a recipe and `topiary finetune`.
public struct FinetuneConfig: Codable, Sendable, Equatable {
    /// The names of the data folder's texts that `data` may give instead of a path.
    public static let namedTexts = ["wikitext2", "ptb"]

    /// A text file, or `wikitext2` / `ptb` for the data folder's files.
    public var data = "wikitext2"
    /// `text` (consecutive windows) or `alpaca` (instruction examples with the Alpaca template).
    public var format = "text"
    public var trainOnInputs = false
    public var lora = LoRAConfig()
    public var training: TrainingConfig = {
        var t = TrainingConfig()
        t.dataOffset = 32768
        return t
    }()
    public var maxSeconds: Double?
    /// Distillation from a teacher (the `distill` stage and command); nil: the language-model loss alone.
    public var distillation: DistillationConfig?
    /// The teacher model (a GGUF file or a checkpoint folder); nil in a recipe: the recipe's model, before pruning.
    public var teacher: String?
    /// The folder of the teacher's cached top-K targets; nil: `teacher-cache` in the stage's (or command's) output folder.
    public var teacherCache: String?

    public init() {}

    /// The request of a distillation run: a finetune run's settings with a teacher's targets, and the optimiser settings
    /// that recovered most in a short budget (BENCHMARKS.md, "Recovery: distillation against LoRA"): lr 1.5e-3, cosine,
    /// 5 warm-up steps.
    public static func distillation() -> FinetuneConfig {
        var c = FinetuneConfig()
        c.distillation = DistillationConfig()
        c.training.learningRate = 1.5e-3
        c.training.schedule = .cosine
        c.training.warmupSteps = 5
        return c
    }

    /// Whether `data` is one of the evaluation texts (trained on only past the evaluation windows by default).
    public var readsEvaluationText: Bool { Self.namedTexts.contains(data) || PerplexityDataset.isEvaluationText(data) }

    /// The training text's path: `data` itself, or a named text under the data folder `folder`.
    public func dataPath(folder: String) -> String {
        Self.namedTexts.contains(data) ? (PerplexityDataset(rawValue: data) ?? .wikitext2).path(data: folder) : data
    }

    /// Sets `training.dataOffset` to the default for `data` (past the evaluation windows of an evaluation text).
    public mutating func useDefaultDataOffset() {
        training.dataOffset = TrainingConfig.defaultDataOffset(evaluationText: readsEvaluationText)
    }

    public func validate() throws {
        try Require.that(["text", "alpaca"].contains(format), "text_format", format, "must be text or alpaca")
        try Require.that(
            !(format == "alpaca" && Self.namedTexts.contains(data)), "text_format", nil,
            "{text_format} alpaca needs {data} to name an Alpaca JSON file (instruction, input, output records)")
        try Require.inRange(lora.rank, "rank", 1...4096)
        try Require.that(lora.alpha.isFinite && lora.alpha >= 0, "alpha", lora.alpha, "must be ≥ 0")
        try Require.that(lora.dropout >= 0 && lora.dropout < 1, "dropout", lora.dropout, "is outside [0, 1)")
        try Require.that(
            !lora.targets.isEmpty && lora.targets.allSatisfy { !$0.isEmpty }, "targets", lora.targets.joined(separator: ","),
            "must name at least one module (q, k, v, o, gate, up, down, or a substring of the weight names)")
        let t = training
        try Require.that(t.learningRate > 0 && t.learningRate <= 10, "lr", t.learningRate, "must be in (0, 10]")
        try Require.inRange(t.warmupSteps, "warmup", 0...10_000_000)
        try Require.that(t.weightDecay >= 0 && t.weightDecay <= 10, "weight_decay", t.weightDecay, "is outside [0, 10]")
        try Require.that(t.maxGradNorm.isFinite && t.maxGradNorm >= 0, "clip", t.maxGradNorm, "must be ≥ 0")
        try Require.inRange(t.batchSize, "batch", 1...(1 << 20))
        try Require.inRange(t.length, "length", 2...(1 << 24))
        try Require.inRange(t.accumulation, "accumulation", 1...4096)
        try Require.inRange(t.steps, "steps", 1...10_000_000)
        try Require.inRange(t.saveEvery, "save_every", 0...10_000_000)
        try Require.inRange(t.evaluateEvery, "eval_every", 0...10_000_000)
        try Require.inRange(t.validationWindows, "val_windows", 0...100_000)
        try Require.inRange(t.dataOffset, "data_offset", 0...Int(Int32.max))
        if let s = maxSeconds { try Require.that(s.isFinite && s >= 1, "max_seconds", s, "must be at least 1") }
        if let d = distillation {
            try Require.that(format == "text", "text_format", format, "distillation trains on a text (consecutive windows), not alpaca")
            try Require.that(
                d.temperature.isFinite && d.temperature >= 0.05 && d.temperature <= 100, "temperature", d.temperature,
                "must be in [0.05, 100]")
            try Require.that(
                d.weight >= 0 && d.weight <= 1, "kd_weight", d.weight, "must be in [0, 1] (1 − kd_weight weighs the text's loss)")
            try Require.inRange(d.topK, "top_k", 0...(1 << 20))
            try Require.that(d.hiddenWeight.isFinite && d.hiddenWeight >= 0, "hidden_weight", d.hiddenWeight, "must be ≥ 0")
            try Require.that(
                d.hiddenLayers.allSatisfy { $0 >= 0 && $0 < 100_000 }, "hidden_layers",
                d.hiddenLayers.map(String.init).joined(separator: ","),
                "must be layer indices (0, 1, …)")
        }
    }
}
