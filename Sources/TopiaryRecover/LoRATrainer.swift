import CTopiaryKernels
import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// Which layers get adapters, and their shape.
public struct LoRAConfig: Codable, Sendable, Equatable {
    public var rank = 8
    public var alpha: Float = 16
    public var dropout: Float = 0.05
    /// Module names (`q,k,v,o,gate,up,down`) or any substring of the weight names.
    public var targets = ["q", "k", "v", "o", "gate", "up", "down"]
    public init() {}
}

/// Optimiser, schedule and data settings of a LoRA run.
public struct TrainingConfig: Codable, Sendable, Equatable {
    public var learningRate: Float = 1e-4
    public var schedule: LRSchedule = .constant
    public var warmupSteps = 0
    public var weightDecay: Float = 0
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    /// Global gradient-norm clip (0 = off).
    public var maxGradNorm: Float = 0
    public var batchSize = 4
    public var length = 128
    public var accumulation = 1
    public var steps = 100
    /// Token offset of the first training window; step s reads the next batch·length·accumulation tokens.
    public var dataOffset = 0
    /// The one default for `dataOffset` (`finetune --data-offset`, a recipe's `data_offset`): past the 64 × 512
    /// evaluation windows (32,768 tokens) when the training text is an evaluation text, so recovery never trains on what
    /// is evaluated; 0 for any other text.
    public static func defaultDataOffset(evaluationText: Bool) -> Int { evaluationText ? 32768 : 0 }
    /// Validation windows (from the end of the token stream) and how often to evaluate them (0 = never).
    public var validationWindows = 4
    public var evaluateEvery = 50
    public var saveEvery = 50
    public var seed: UInt64 = 0
    public init() {}
}

public enum TrainingError: Error, LocalizedError, Equatable {
    case data(String)
    case unknownTarget(String, available: [String])
    case rankTooLarge(rank: Int, tensor: String, shape: [Int])
    case resumeMismatch(String)
    case invalid(String)
    /// LoRA adapters given to apply (`--adapters DIR`): the message starts with the folder.
    case adapters(String)

    public var errorDescription: String? {
        switch self {
        case let .data(m): return "training data: \(m)"
        case let .unknownTarget(t, available):
            return "--targets: '\(t)' matches no linear weight (modules: \(available.joined(separator: ", ")))"
        case let .rankTooLarge(r, t, s): return "--rank \(r) is larger than a dimension of \(t) \(s)"
        case let .resumeMismatch(m): return "--resume: \(m)"
        case let .invalid(m): return m
        case let .adapters(m): return "--adapters \(m)"
        }
    }
}

/// Trains LoRA adapters on a frozen model with AdamW, checkpoints atomically and resumes exactly.
public final class LoRATrainer {
    public let model: any AdaptableModel
    public let lora: LoRAConfig
    public let config: TrainingConfig
    public let tokens: [Int32]
    public let optimizer: AdamW
    public private(set) var step = 0
    public private(set) var history: [(step: Int, loss: Double, lr: Float)] = []
    public private(set) var validation: [(step: Int, loss: Double)] = []

    static let moduleNames = [
        "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
        "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj",
    ]

    /// Instruction examples (Alpaca); when not empty they replace the token stream.
    public let examples: [InstructionExample]
    public let validationExamples: [InstructionExample]
    /// Fills windows after an example's end (never trained on).
    let padID: Int32
    /// The model distilled from (nil: the language-model loss alone).
    public private(set) var teacher: Teacher?

    /// Trains on the teacher's distributions (and hidden states) instead of the text's next tokens alone.
    public func distill(from teacher: Teacher) throws {
        guard examples.isEmpty else {
            throw TrainingError.invalid("distillation trains on a text (--text-format text), not on Alpaca examples")
        }
        try teacher.prepare(student: model, tokens: tokens, training: config)
        self.teacher = teacher
    }

    /// Trains on consecutive windows of a token stream (raw text).
    public convenience init(model: any AdaptableModel, lora: LoRAConfig, config: TrainingConfig, tokens: [Int32]) throws {
        let perStep = config.batchSize * config.length * config.accumulation
        guard tokens.count >= config.dataOffset + perStep else {
            throw TrainingError.data("\(tokens.count) tokens, but one step needs \(perStep) tokens from offset \(config.dataOffset)")
        }
        try self.init(model: model, lora: lora, config: config, tokens: tokens, examples: [], validation: [], padID: 0)
    }

    /// Trains on instruction examples (each in its own window of `config.length`, right-padded), validating on
    /// `validation`.
    public convenience init(
        model: any AdaptableModel, lora: LoRAConfig, config: TrainingConfig,
        examples: [InstructionExample], validation: [InstructionExample], padID: Int32
    ) throws {
        // An example needs at least one response token inside its window.
        let trainable = { (e: InstructionExample) in min(e.ids.count, config.length) - 1 >= max(e.promptLength, 1) }
        guard !examples.isEmpty else { throw TrainingError.data("no training examples") }
        let kept = examples.filter(trainable)
        guard !kept.isEmpty else {
            throw TrainingError.data(
                "every example's prompt fills the whole window (nothing to train on): raise --length or pass --train-on-inputs")
        }
        try self.init(
            model: model, lora: lora, config: config, tokens: [], examples: kept, validation: validation.filter(trainable), padID: padID)
    }

    init(
        model: any AdaptableModel, lora: LoRAConfig, config: TrainingConfig, tokens: [Int32],
        examples: [InstructionExample], validation: [InstructionExample], padID: Int32
    ) throws {
        guard config.batchSize >= 1, config.length >= 2, config.accumulation >= 1, config.steps >= 0 else {
            throw TrainingError.invalid("batch, length (≥ 2), accumulation and steps must be positive")
        }
        guard lora.rank >= 1 else { throw TrainingError.invalid("--rank must be at least 1") }
        guard lora.dropout >= 0 && lora.dropout < 1 else { throw TrainingError.invalid("--dropout must be in [0, 1)") }
        self.model = model
        self.lora = lora
        self.config = config
        self.tokens = tokens
        self.examples = examples
        self.validationExamples = validation
        self.padID = padID
        optimizer = AdamW(beta1: config.beta1, beta2: config.beta2, eps: config.eps, weightDecay: config.weightDecay)
        try attachAdapters()
    }

    /// Adds fresh adapters to every targeted linear weight and freezes everything else.
    func attachAdapters() throws {
        let linears = model.parameters.filter { $0.shape.count == 2 && $0.name.contains(".layers.") }
        var chosen: [Parameter] = []
        for t in lora.targets {
            let pattern = Self.moduleNames[t] ?? t
            let matches = linears.filter { $0.name.contains(pattern) }
            guard !matches.isEmpty else {
                throw TrainingError.unknownTarget(t, available: Self.moduleNames.keys.sorted())
            }
            chosen += matches.filter { m in !chosen.contains { $0 === m } }
        }
        var rng = SplitMix64(seed: config.seed)
        for p in model.parameters { p.requiresGrad = false }
        var adapters: [String: LoRAAdapter] = [:]
        for p in chosen.sorted(by: { $0.name < $1.name }) {
            guard lora.rank <= min(p.shape[0], p.shape[1]) else {
                throw TrainingError.rankTooLarge(rank: lora.rank, tensor: p.name, shape: p.shape)
            }
            adapters[p.name] = LoRAAdapter(
                target: p.name, outFeatures: p.shape[0], inFeatures: p.shape[1], rank: lora.rank,
                alpha: lora.alpha, dropout: lora.dropout, rng: &rng)
        }
        model.adapters = adapters
    }

    public var trainableParameters: [Parameter] {
        model.adapters.keys.sorted().flatMap { [model.adapters[$0]!.a, model.adapters[$0]!.b] }
    }

    public var trainableCount: Int { trainableParameters.reduce(0) { $0 + $1.value.count } }

    /// Tokens and targets of step `s`: consecutive windows of the stream (wrapping around after the offset when
    /// steps outrun the data), or the next `batchSize` instruction examples (cycling through them).
    func batch(step s: Int, micro: Int) -> (ids: [Int32], targets: [Int32]) {
        let n = config.batchSize * config.length
        let index = s * config.accumulation + micro
        if examples.isEmpty {
            let start = streamStart(index)
            let ids = Array(tokens[start..<(start + n)])
            return (ids, targets(ids, windows: config.batchSize))
        }
        return windows(of: (0..<config.batchSize).map { examples[(index * config.batchSize + $0) % examples.count] })
    }

    /// The first token of micro-batch `index` in the token stream.
    func streamStart(_ index: Int) -> Int {
        let n = config.batchSize * config.length
        return config.dataOffset + (index * n) % ((tokens.count - config.dataOffset) / n * n)
    }

    /// The tokens and labels step `step` trains on (for tests and inspection).
    public func debugBatch(step: Int) -> (ids: [Int32], targets: [Int32]) { batch(step: step, micro: 0) }

    /// Examples right-padded into windows of `config.length`; labels only where the next token is a response token.
    func windows(of chosen: [InstructionExample]) -> (ids: [Int32], targets: [Int32]) {
        let l = config.length
        var ids = [Int32](repeating: padID, count: chosen.count * l), t = [Int32](repeating: -100, count: chosen.count * l)
        for (b, e) in chosen.enumerated() {
            let n = min(e.ids.count, l)
            for i in 0..<n { ids[b * l + i] = e.ids[i] }
            for i in 0..<max(0, n - 1) where i + 1 >= e.promptLength { t[b * l + i] = e.ids[i + 1] }
        }
        return (ids, t)
    }

    func targets(_ ids: [Int32], windows: Int) -> [Int32] {
        var t = [Int32](repeating: -100, count: ids.count)
        for w in 0..<windows { for i in 0..<(config.length - 1) { t[w * config.length + i] = ids[w * config.length + i + 1] } }
        return t
    }

    /// One optimiser step (with gradient accumulation). Returns the mean training loss.
    @discardableResult
    public func trainStep() throws -> Double {
        let lr = config.schedule.rate(base: config.learningRate, step: step, total: config.steps, warmup: config.warmupSteps)
        var loss = 0.0
        for micro in 0..<config.accumulation {
            let (ids, labels) = batch(step: step, micro: micro)
            let g = Graph(recording: true)
            g.training = true
            g.dropoutSeed = config.seed &+ UInt64(step * config.accumulation + micro + 1) &* 0xD1B5_4A32_D192_ED03
            let l = try objective(g, ids: ids, labels: labels, index: step * config.accumulation + micro)
            try g.backward(l, seed: 1 / Float(config.accumulation))
            loss += Double(l.value[0]) / Double(config.accumulation)
        }
        if config.maxGradNorm > 0 { AdamW.clipGradients(trainableParameters, maxNorm: config.maxGradNorm) }
        optimizer.update(trainableParameters, learningRate: lr)
        step += 1
        history.append((step, loss, lr))
        return loss
    }

    /// The loss of one micro-batch: cross-entropy on the labels, or the distillation objective with a teacher.
    func objective(_ g: Graph, ids: [Int32], labels: [Int32], index: Int) throws -> Var {
        guard let teacher else {
            return try g.crossEntropy(model.forward(g, tokens: ids, batch: config.batchSize, cache: nil, logits: .all), targets: labels)
        }
        let d = teacher.config
        var logits: Var, hidden: [Int: Var] = [:]
        if let student = model as? DecoderModel {
            (logits, hidden) = try student.forwardCapturing(g, tokens: ids, batch: config.batchSize, layers: d.hiddenLayers)
        } else {
            logits = try model.forward(g, tokens: ids, batch: config.batchSize, cache: nil, logits: .all)
        }
        let t = try teacher.targets(ids: ids, batch: config.batchSize, start: streamStart(index))
        var loss = g.scale(try g.distillationLoss(logits, teacher: t.targets, temperature: d.temperature), d.weight)
        if d.weight < 1 { loss = try g.add(loss, g.scale(try g.crossEntropy(logits, targets: labels), 1 - d.weight)) }
        for l in d.hiddenLayers {
            let mse = try g.meanSquaredError(hidden[l]!, target: t.hidden[l]!)
            loss = try g.add(loss, g.scale(mse, d.hiddenWeight / Float(d.hiddenLayers.count)))
        }
        return loss
    }

    /// Mean loss over the validation windows (the last windows of the token stream), no dropout.
    public func validationLoss() throws -> Double? {
        if !examples.isEmpty {
            // Mean over every response token of the held-out examples, a batch at a time.
            guard !validationExamples.isEmpty else { return nil }
            var total = 0.0, count = 0
            for start in stride(from: 0, to: validationExamples.count, by: config.batchSize) {
                let chunk = Array(validationExamples[start..<min(start + config.batchSize, validationExamples.count)])
                let (ids, labels) = windows(of: chunk)
                let n = labels.filter { $0 != -100 }.count
                guard n > 0 else { continue }
                let logits = try model.forward(Graph(), tokens: ids, batch: chunk.count, cache: nil, logits: .all)
                total += Double(try Graph().crossEntropy(logits, targets: labels).value[0]) * Double(n)
                count += n
            }
            return count > 0 ? total / Double(count) : nil
        }
        let n = config.validationWindows
        guard n > 0, tokens.count >= n * config.length else { return nil }
        let ids = Array(tokens[(tokens.count - n * config.length)...])
        let g = Graph()
        let logits = try model.forward(g, tokens: ids, batch: n, cache: nil, logits: .all)
        return Double(try g.crossEntropy(logits, targets: targets(ids, windows: n)).value[0])
    }

    /// Trains until `config.steps` (or `maxSeconds`), checkpointing into `directory/checkpoint` every
    /// `saveEvery` steps and at the end.
    public func run(directory: String?, maxSeconds: Double? = nil, progress: ProgressBar? = nil) throws {
        let start = Date()
        let tokensPerStep = Double(config.batchSize * config.length * config.accumulation)
        while step < config.steps {
            if let maxSeconds, Date().timeIntervalSince(start) >= maxSeconds { break }
            let loss = try trainStep()
            if config.evaluateEvery > 0 && step % config.evaluateEvery == 0, let v = try validationLoss() { validation.append((step, v)) }
            let elapsed = Date().timeIntervalSince(start)
            progress?.advance(
                status: String(
                    format: "loss %.4f lr %.2e %.0f tok/s%@", loss, history.last!.lr,
                    tokensPerStep * Double(history.count) / max(elapsed, 1e-9),
                    validation.last.map { String(format: " val %.4f", $0.loss) } ?? ""))
            if let directory, config.saveEvery > 0, step % config.saveEvery == 0 { try saveCheckpoint(directory: directory) }
        }
        progress?.finish()
        if let directory { try saveCheckpoint(directory: directory) }
    }

    // MARK: checkpoints

    struct State: Codable {
        var step: Int
        var lora: LoRAConfig
        var config: TrainingConfig
        var model: String
        var history: [[Double]]
        var validation: [[Double]]
        var distillation: DistillationConfig?
    }

    /// A description of the model that a resumed run must match.
    var modelFingerprint: String {
        let c = model.config
        return
            "\(c.architecture) layers=\(c.layerCount) hidden=\(c.hiddenSize) heads=\(c.heads) kv=\(c.kvHeads) "
            + "ffn=\(c.intermediateSizes) params=\(model.parameterCount)"
    }

    /// Adapters, optimiser moments and the run's state, written to a temporary directory that replaces
    /// `directory/checkpoint` only when complete.
    public func saveCheckpoint(directory: String) throws {
        let dest = directory + "/checkpoint", tmp = directory + "/.checkpoint.tmp-\(getpid())"
        do { try writeCheckpoint(tmp: tmp, dest: dest, directory: directory) } catch {
            try? FileManager.default.removeItem(atPath: tmp)
            throw OutputLocation.naming(dest, for: error, temporary: tmp)
        }
    }

    private func writeCheckpoint(tmp: String, dest: String, directory: String) throws {
        let fm = FileManager.default
        try? fm.removeItem(atPath: tmp)
        try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        try Safetensors.write(trainableParameters.map { ($0.name, $0.value) }, to: tmp + "/adapters.safetensors")
        try Safetensors.write(optimizer.stateTensors(), to: tmp + "/optimizer.safetensors")
        let state = State(
            step: step, lora: lora, config: config, model: modelFingerprint,
            history: history.map { [Double($0.step), $0.loss, Double($0.lr)] },
            validation: validation.map { [Double($0.step), $0.loss] }, distillation: teacher?.config)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(state), to: tmp + "/state.json")
        try Checkpoint.writeManifest(directory: tmp)
        let old = directory + "/.checkpoint.old-\(getpid())"
        if fm.fileExists(atPath: dest) { try fm.moveItem(atPath: dest, toPath: old) }
        try fm.moveItem(atPath: tmp, toPath: dest)
        try AtomicFile.syncDirectory(directory)
        try? fm.removeItem(atPath: old)
    }

    /// Continues a run from `directory/checkpoint`: same model, same settings, exact state.
    public func resume(directory: String) throws {
        let dir = directory + "/checkpoint"
        guard let data = FileManager.default.contents(atPath: dir + "/state.json"),
            FileManager.default.fileExists(atPath: dir + "/manifest.json")
        else {
            throw TrainingError.resumeMismatch("\(dir) holds no complete checkpoint")
        }
        // Complete means listed in the manifest (written last) with matching sizes and checksums.
        try Checkpoint.verifyManifest(directory: dir, required: ["adapters.safetensors", "optimizer.safetensors", "state.json"])
        let state = try JSONDecoder().decode(State.self, from: data)
        guard state.model == modelFingerprint else {
            throw TrainingError.resumeMismatch("\(dir) was made for a different model (\(state.model))")
        }
        guard state.distillation == teacher?.config else {
            throw TrainingError.resumeMismatch(
                "\(dir) was trained " + (state.distillation == nil ? "without a teacher" : "with other distillation settings"))
        }
        guard state.lora == lora else { throw TrainingError.resumeMismatch("\(dir) used other LoRA settings (\(state.lora))") }
        var saved = state.config
        saved.steps = config.steps  // the step budget may be extended on resume
        guard saved == config else { throw TrainingError.resumeMismatch("\(dir) used other training settings") }
        let adapters = try Safetensors.read(path: dir + "/adapters.safetensors").tensors
        for p in trainableParameters {
            guard let t = adapters[p.name], t.shape == p.shape else {
                throw TrainingError.resumeMismatch("\(dir)/adapters.safetensors lacks \(p.name) of shape \(p.shape)")
            }
            p.value = t
        }
        optimizer.restore(step: state.step, tensors: try Safetensors.read(path: dir + "/optimizer.safetensors").tensors)
        step = state.step
        history = state.history.map { (Int($0[0]), $0[1], Float($0[2])) }
        validation = state.validation.map { (Int($0[0]), $0[1]) }
    }

    // MARK: outputs

    /// PEFT-style adapter files: `adapter_model.safetensors` + `adapter_config.json`.
    public func saveAdapters(directory: String) throws {
        try Safetensors.write(
            trainableParameters.map { ("base_model.model." + $0.name, $0.value) },
            metadata: ["format": "pt"], to: directory + "/adapter_model.safetensors")
        let targets = Set(
            model.adapters.keys.map { name -> String in
                let parts = name.split(separator: ".")
                return parts.count >= 2 ? String(parts[parts.count - 2]) : name
            }
        ).sorted()
        let cfg: [String: Any] = [
            "peft_type": "LORA", "r": lora.rank, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
            "target_modules": targets, "bias": "none", "task_type": "CAUSAL_LM", "fan_in_fan_out": false,
        ]
        try AtomicFile.write(
            try JSONSerialization.data(withJSONObject: cfg, options: [.prettyPrinted, .sortedKeys]),
            to: directory + "/adapter_config.json")
    }

    /// Loss history as CSV and an SVG chart.
    public func saveLossCurve(directory: String) throws {
        var csv = "step,loss,lr,val_loss\n"
        let val = Dictionary(validation.map { ($0.step, $0.loss) }, uniquingKeysWith: { a, _ in a })
        for h in history { csv += "\(h.step),\(h.loss),\(h.lr),\(val[h.step].map { "\($0)" } ?? "")\n" }
        try AtomicFile.write(csv, to: directory + "/loss.csv")
        var series = [SVGLinePlot.Series(name: "training loss", points: history.map { (Double($0.step), $0.loss) }, color: "#1f77b4")]
        if !validation.isEmpty {
            series.append(.init(name: "validation loss", points: validation.map { (Double($0.step), $0.loss) }, color: "#d62728"))
        }
        try AtomicFile.write(
            SVGLinePlot(
                title: teacher == nil ? "LoRA recovery" : "distillation (training: objective, validation: cross-entropy)", xLabel: "step",
                yLabel: teacher == nil ? "cross-entropy" : "loss", series: series
            ).render(),
            to: directory + "/loss.svg")
    }

    /// Folds every adapter into its weight and removes the adapters: a plain model again.
    public func merge() {
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0) })
        for (name, a) in model.adapters { if let w = params[name] { a.merge(into: w) } }
        model.adapters = [:]
        for p in model.parameters { p.requiresGrad = true }
    }
}

extension LoRATrainer {
    /// Attaches saved PEFT-style adapters (`adapter_model.safetensors` + `adapter_config.json` in `directory`)
    /// to `model` without merging them.
    public static func loadAdapters(directory: String, into model: any AdaptableModel) throws {
        try checkAdapterDirectory(directory)
        guard let cfgData = FileManager.default.contents(atPath: directory + "/adapter_config.json"),
            let cfg = try? JSONSerialization.jsonObject(with: cfgData) as? [String: Any],
            let rank = cfg["r"] as? Int, let alpha = (cfg["lora_alpha"] as? NSNumber)?.floatValue
        else {
            throw TrainingError.adapters("\(directory): adapter_config.json is unreadable or lacks r / lora_alpha")
        }
        let tensors = try Safetensors.read(path: directory + "/adapter_model.safetensors").tensors
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0) })
        var adapters: [String: LoRAAdapter] = [:]
        for (name, a) in tensors where name.hasSuffix(".lora_A.weight") {
            let stem = String(name.dropFirst("base_model.model.".count).dropLast(".lora_A.weight".count))
            guard let b = tensors["base_model.model." + stem + ".lora_B.weight"], let w = params[stem + ".weight"],
                a.shape == [rank, w.shape[1]], b.shape == [w.shape[0], rank]
            else {
                throw TrainingError.adapters("\(directory): adapter \(stem) does not fit this model")
            }
            adapters[stem + ".weight"] = LoRAAdapter(
                target: stem + ".weight", a: Parameter(name: stem + ".lora_A.weight", value: a),
                b: Parameter(name: stem + ".lora_B.weight", value: b), alpha: alpha, dropout: 0)
        }
        guard !adapters.isEmpty else { throw TrainingError.adapters("\(directory): no adapters found") }
        model.adapters = adapters
    }

    /// Fails unless `directory` is an existing folder holding adapter_config.json (checked before a model is loaded).
    public static func checkAdapterDirectory(_ directory: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
            throw TrainingError.adapters("\(directory): no such adapter directory")
        }
        guard isDirectory.boolValue else {
            throw TrainingError.adapters("\(directory): not a directory (expected a folder with adapter_config.json)")
        }
        guard FileManager.default.fileExists(atPath: directory + "/adapter_config.json") else {
            throw TrainingError.adapters("\(directory): no adapter_config.json in this folder (not a LoRA adapter directory)")
        }
    }
}
