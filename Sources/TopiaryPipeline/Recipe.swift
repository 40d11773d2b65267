import Foundation
import TopiaryEval
import TopiaryPrune
import TopiaryRecover
import Yams

/// The stages of a run, in the order they execute.
public enum StageKind: String, CaseIterable, Codable, Sendable, Comparable {
    case load, graph, importance, prune, sparsify, sweep, finetune, merge, evaluate

    public static func < (a: StageKind, b: StageKind) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// Calibration windows taken from a text file (default: WikiText-2 test under the data folder, from token 32,768,
/// past the 64 × 512 evaluation windows).
public struct CalibrationConfig: Codable, Sendable, Equatable {
    public var file: String?
    public var windows: Int
    public var length: Int
    public var offset = 32768

    public init(file: String? = nil, windows: Int, length: Int, offset: Int = 32768) {
        self.file = file
        self.windows = windows
        self.length = length
        self.offset = offset
    }
}

public struct ImportanceConfig: Codable, Sendable, Equatable {
    public var criterion: ImportanceCriterion = .taylor
    public var aggregation: Aggregation = .sum
    public var calibration = CalibrationConfig(windows: 10, length: 128)
    public var seed: UInt64 = 0
    /// The criteria's settings (λ, Taylor order, variational dropout, OBS step); nil: the defaults (and out of the
    /// stage key, so recipes without them keep their checkpoints).
    public var options: CriterionOptions?

    /// The settings the criterion runs with (the recipe's seed included).
    public var criterionOptions: CriterionOptions {
        var o = options ?? CriterionOptions()
        o.seed = seed
        return o
    }
}

public struct PruneConfig: Codable, Sendable, Equatable {
    public var ratio: Double
    /// `A-B` (inclusive) or `all`.
    public var layers: String
    public var mode: StructuredPruner.Mode = .uniform
    public var roundTo = 1
    /// `uniform` (nil) or `search`: per-layer shares learned by ``LayerRatioSearch`` (optional fields stay out of the
    /// stage key when unset, so recipes without them keep their checkpoints).
    public var allocation: String?
    public var searchEvaluations: Int?
    public var searchWindows: Int?
    public var searchOffset: Int?
    /// `remove` (nil) or `kmeans`: MLP channels merged by k-means instead of removed.
    public var merge: String?
    /// The OBS update of the linears reading the removed units (``StructuredOBS``); nil: on for criterion `obs`, off
    /// otherwise.
    public var compensate: Bool?
}

public struct SparsifyConfig: Codable, Sendable, Equatable {
    public var method: SparsifyMethod = .wanda
    public var sparsity: Double = 0.5
    public var nm: String?
    public var allocation = "uniform"
    /// AlphaPruning: per-layer sparsities span [S·(1−ε), S·(1+ε)] before the mean is restored.
    public var epsilon = 0.2
    /// OWL: outlier threshold (× the layer's mean score) and the span ±λ.
    public var owlM = 5.0
    public var owlLambda = 0.08
    public var calibration = CalibrationConfig(windows: 32, length: 512)
    public var seed: UInt64 = 0
}

public struct PerplexityConfig: Codable, Sendable, Equatable {
    public var datasets = ["wikitext2"]
    public var window = 512
    public var windows = 64

    public init(datasets: [String] = ["wikitext2"], window: Int = 512, windows: Int = 64) {
        self.datasets = datasets
        self.window = window
        self.windows = windows
    }
}

/// A row of a sweep: an unstructured method (level = sparsity of the linear weights), or a structured criterion,
/// `structured-<criterion>` (level = fraction of non-embedding parameters removed, every layer alike; `structured-kmeans`
/// merges MLP channels by k-means with Taylor for the heads). Encoded as its name, so sweeps of unstructured methods
/// keep their stage keys.
public struct SweepMethod: RawRepresentable, Codable, Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        case sparsify(SparsifyMethod)
        case structured(ImportanceCriterion)
        case kmeans
    }
    public let kind: Kind
    public init(_ kind: Kind) { self.kind = kind }

    public init?(rawValue: String) {
        if let m = SparsifyMethod(rawValue: rawValue) { kind = .sparsify(m); return }
        guard rawValue.hasPrefix("structured-") else { return nil }
        let name = String(rawValue.dropFirst("structured-".count))
        if name == "kmeans" { kind = .kmeans; return }
        guard let c = ImportanceCriterion(rawValue: name), c.implementation.inSweeps else { return nil }
        kind = .structured(c)
    }

    public var rawValue: String {
        switch kind {
        case let .sparsify(m): return m.rawValue
        case let .structured(c): return "structured-" + c.rawValue
        case .kmeans: return "structured-kmeans"
        }
    }

    /// Every name a sweep accepts.
    public static var allNames: [String] {
        SparsifyMethod.allCases.map(\.rawValue)
            + ImportanceCriterion.allCases.filter(\.implementation.inSweeps).map { "structured-" + $0.rawValue } + ["structured-kmeans"]
    }

    public var needsCalibration: Bool {
        switch kind {
        case let .sparsify(m): return m.needsCalibration
        case let .structured(c): return c.needs().readsCalibration
        case .kmeans: return true
        }
    }
}

public struct SweepConfig: Codable, Sendable, Equatable {
    public var methods: [SweepMethod] = [.init(.sparsify(.magnitude)), .init(.sparsify(.negMagnitude)), .init(.sparsify(.wanda))]
    public var levels: [Double] = [0.1, 0.3, 0.5, 0.7, 0.9]
    public var perplexity = PerplexityConfig(datasets: ["wikitext2"], window: 512, windows: 8)
    public var calibration = CalibrationConfig(windows: 8, length: 512)
    public var seed: UInt64 = 0
    /// An earlier sweep's output folder whose finished cells are taken over when its model, data, calibration,
    /// perplexity settings and seed are the same (not part of the stage key: it changes no result).
    public var reuse: String?

    public init() {}

    enum CodingKeys: String, CodingKey { case methods, levels, perplexity, calibration, seed }
}

public struct FinetuneConfig: Codable, Sendable, Equatable {
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
}

public struct GenerationConfig: Codable, Sendable, Equatable {
    public var prompts: [String] = []
    public var maxTokens = 32
}

public struct EvaluateConfig: Codable, Sendable, Equatable {
    /// Which models to evaluate: `base` (as loaded), `pruned` (after prune/sparsify), `final` (the run's output).
    public var models = ["base", "pruned", "final"]
    public var perplexity: PerplexityConfig? = PerplexityConfig()
    public var tasks: [String] = []
    public var limit: Int?
    public var generation = GenerationConfig()
}

/// A whole compression run, read from YAML (schema version 1).
public struct Recipe: Codable, Sendable, Equatable {
    public static let schemaVersion = 1
    public static let allocations = AllocationMethod.allCases.map(\.rawValue)

    public var version = Recipe.schemaVersion
    public var name: String
    public var description: String?
    /// Absolute (resolved) paths.
    public var model: String
    public var data: String
    public var seed: UInt64 = 0
    public var threads: Int?
    public var file: String

    public var graph: Bool = false
    public var importance: ImportanceConfig?
    public var prune: PruneConfig?
    public var sparsify: SparsifyConfig?
    public var sweep: SweepConfig?
    public var finetune: FinetuneConfig?
    public var merge: Bool = false
    public var evaluate: EvaluateConfig?

    /// The stages this recipe runs, in order (`load` always first).
    public var stages: [StageKind] {
        var s: [StageKind] = [.load]
        if graph { s.append(.graph) }
        if importance != nil { s.append(.importance) }
        if prune != nil { s.append(.prune) }
        if sparsify != nil { s.append(.sparsify) }
        if sweep != nil { s.append(.sweep) }
        if finetune != nil { s.append(.finetune) }
        if merge { s.append(.merge) }
        if evaluate != nil { s.append(.evaluate) }
        return s
    }

    /// Reads and validates a recipe file. `dataOverride` / `modelOverride` replace the recipe's paths.
    public static func load(path: String, dataOverride: String? = nil, modelOverride: String? = nil) throws -> Recipe {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw RecipeError(file: path, message: "no such recipe file")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw RecipeError(file: path, message: "cannot be read") }
        guard data.count <= 1 << 20 else {
            throw RecipeError(file: path, message: "too large for a recipe (\(data.count) bytes; the limit is 1 MiB)")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw RecipeError(file: path, message: "is not UTF-8 text") }
        return try parse(text, file: path, dataOverride: dataOverride, modelOverride: modelOverride)
    }

    /// Parses recipe text; relative paths are relative to `file`'s folder.
    public static func parse(
        _ text: String, file: String, dataOverride: String? = nil, modelOverride: String? = nil,
        checkFiles: Bool = true
    ) throws -> Recipe {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch let e as YamlError {
            throw yamlError(e, file: file)
        } catch {
            throw RecipeError(file: file, message: "not valid YAML (\(error))")
        }
        guard let node else { throw RecipeError(file: file, message: "the recipe is empty") }
        // Nesting depth is bounded by libyaml itself; aliases are never expanded here (a reader only walks the keys it
        // knows and stops at the first value of the wrong shape), so a "billion laughs" file costs nothing.
        let base = URL(fileURLWithPath: file).deletingLastPathComponent().path
        func resolve(_ p: String) -> String {
            let expanded = (p as NSString).expandingTildeInPath
            return expanded.hasPrefix("/")
                ? expanded : (URL(fileURLWithPath: base).appendingPathComponent(expanded).standardizedFileURL.path)
        }
        var top = try MappingReader(node, file: file, path: "recipe")
        guard case .mapping = node else { throw top.error(at: node, "a recipe is a mapping (version, name, model, stages)") }
        guard let version = try top.int("version") else {
            throw top.error(at: node, "missing `version` (this Topiary reads recipe version \(schemaVersion))")
        }
        guard version == schemaVersion else {
            throw top.error(
                at: top.value("version"), "recipe version \(version) is not supported (this Topiary reads version \(schemaVersion))")
        }
        let name = try top.string("name") ?? URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }), !name.hasPrefix(".") else {
            throw top.error(
                at: top.value("name"), "recipe.name `\(name)` must be letters, digits, '-', '_' or '.' (it names the run's folder)")
        }
        let description = try top.string("description")
        let recipeModel = try top.string("model")
        guard let modelText = modelOverride ?? recipeModel else {
            throw top.error(at: node, "missing `model` (a GGUF file or a Topiary checkpoint folder, relative to the recipe)")
        }
        let modelNode = top.value("model")
        let model = modelOverride.map { ($0 as NSString).expandingTildeInPath } ?? resolve(modelText)
        if checkFiles && !FileManager.default.fileExists(atPath: model) {
            throw modelOverride == nil
                ? top.error(at: modelNode, "model file \(model) does not exist (fetch it with `make model`, or fix the path)")
                : RecipeError(file: file, message: "model file \(model) (from --model) does not exist")
        }
        let data: String
        if let dataOverride {
            data = dataOverride
        } else if let d = try top.string("data") {
            data = resolve(d)
        } else {
            data = ProcessInfo.processInfo.environment["TOPIARY_DATA"] ?? "../shared/data"
        }
        let seed = UInt64(try top.int("seed", range: 0...Int.max) ?? 0)
        let threads = try top.int("threads", range: 1...1024)
        guard let stagesNode = top.value("stages") else { throw top.error(at: node, "missing `stages` (e.g. prune, finetune, evaluate)") }
        var stages = try MappingReader(stagesNode, file: file, path: "stages")
        let known = StageKind.allCases.map(\.rawValue)
        for key in stages.keys where !known.contains(key) {
            throw stages.error(
                at: stages.keyNode(key), "unknown stage `\(key)`" + didYouMean(key, known.filter { $0 != "load" } + ["load"]))
        }
        var r = Recipe(name: name, description: description, model: model, data: data, seed: seed, threads: threads, file: file)

        func calibration(_ reader: inout MappingReader, _ defaults: CalibrationConfig) throws -> CalibrationConfig {
            guard var c = try reader.mapping("calibration") else { return defaults }
            var out = defaults
            if let f = try c.string("file") { out.file = resolve(f) }
            out.windows = try c.int("windows", range: 1...100_000) ?? defaults.windows
            out.length = try c.int("length", range: 2...65_536) ?? defaults.length
            out.offset = try c.int("offset", range: 0...Int(Int32.max)) ?? defaults.offset
            try c.finish()
            if checkFiles, let f = out.file, !FileManager.default.fileExists(atPath: f) {
                throw c.error(at: c.node, "calibration file \(f) does not exist")
            }
            return out
        }

        if let s = try stages.mapping("load") { try s.finish() }
        if let s = try stages.mapping("graph") { try s.finish(); r.graph = true }
        if var s = try stages.mapping("importance") {
            var c = ImportanceConfig()
            if let v = try s.choice("criterion", ImportanceCriterion.allCases.map(\.rawValue)) {
                c.criterion = ImportanceCriterion(rawValue: v)!
            }
            if let v = try s.choice("aggregation", Aggregation.allCases.map(\.rawValue)) { c.aggregation = Aggregation(rawValue: v)! }
            c.seed = UInt64(try s.int("seed", range: 0...Int.max) ?? Int(seed))
            var o = CriterionOptions()
            if let v = try s.double("lambda", min: -100, max: 100) { o.lambda = v }
            if let v = try s.int("taylor_order", range: 1...2) { o.taylorOrder = v }
            if let v = try s.int("vd_steps", range: 1...1_000_000) { o.vdSteps = v }
            if let v = try s.int("vd_windows", range: 1...100_000) { o.vdWindows = v }
            if let v = try s.double("vd_lr", min: 1e-9, max: 100) { o.vdLearningRate = v }
            if let v = try s.double("vd_kl_weight", min: 0, max: 1e6) { o.vdKLWeight = v }
            if let v = try s.int("obs_step", range: 1...65_536) { o.obsStep = v }
            if o != CriterionOptions() { c.options = o }
            c.calibration = try calibration(&s, c.calibration)
            try s.finish()
            r.importance = c
        }
        if var s = try stages.mapping("prune") {
            guard let ratio = try s.double("ratio", min: 0, max: 1, openUpper: true) else {
                throw s.error(
                    at: stages.keyNode("prune"), "stages.prune needs `ratio` (fraction of non-embedding parameters to remove, e.g. 0.2)")
            }
            var c = PruneConfig(ratio: ratio, layers: try s.string("layers") ?? "all")
            if c.layers != "all" {
                let parts = c.layers.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard (parts.count == 1 || parts.count == 2), parts.allSatisfy({ $0 != nil && $0! >= 0 }), parts.first!! <= parts.last!!
                else {
                    throw s.error(at: s.value("layers"), "stages.prune.layers `\(c.layers)` must be `all` or a range A-B (e.g. 3-27)")
                }
            }
            if let v = try s.choice("mode", StructuredPruner.Mode.allCases.map(\.rawValue)) { c.mode = StructuredPruner.Mode(rawValue: v)! }
            c.roundTo = try s.int("round_to", range: 1...4096) ?? 1
            if let v = try s.choice("allocation", ["uniform", "search"]), v == "search" { c.allocation = v }
            c.searchEvaluations = try s.int("search_evaluations", range: 1...10_000)
            c.searchWindows = try s.int("search_windows", range: 1...1024)
            c.searchOffset = try s.int("search_offset", range: 0...100_000_000)
            if let v = try s.choice("merge", ["remove", "kmeans"]), v == "kmeans" { c.merge = v }
            c.compensate = try s.bool("compensate")
            if c.compensate == true && (c.merge != nil || c.allocation != nil) {
                throw s.error(at: stages.keyNode("prune"), "stages.prune.compensate works with allocation `uniform` and merge `remove`")
            }
            if c.allocation == "search" && c.mode != .uniform {
                throw s.error(at: stages.keyNode("prune"), "stages.prune.allocation `search` needs mode `uniform`")
            }
            try s.finish()
            r.prune = c
        }
        if var s = try stages.mapping("sparsify") {
            var c = SparsifyConfig()
            if let v = try s.choice("method", SparsifyMethod.allCases.map(\.rawValue)) { c.method = SparsifyMethod(rawValue: v)! }
            c.sparsity = try s.double("sparsity", min: 0, max: 1, openUpper: true) ?? c.sparsity
            if let nm = try s.string("nm") {
                do { _ = try NMPattern(nm) } catch {
                    throw s.error(at: s.value("nm"), "stages.sparsify.nm `\(nm)`: expected N:M with 1 ≤ N < M (e.g. 2:4)")
                }
                c.nm = nm
            }
            c.allocation = try s.choice("allocation", allocations) ?? "uniform"
            c.epsilon = try s.double("epsilon", min: 0, max: 1, openUpper: true) ?? c.epsilon
            c.owlM = try s.double("owl_m", min: 1e-6) ?? c.owlM
            c.owlLambda = try s.double("owl_lambda", min: 0, max: 0.5, openUpper: true) ?? c.owlLambda
            c.seed = UInt64(try s.int("seed", range: 0...Int.max) ?? Int(seed))
            c.calibration = try calibration(&s, c.calibration)
            try s.finish()
            if c.nm != nil && c.allocation != "uniform" {
                throw s.error(
                    at: s.value("allocation"), "stages.sparsify: a per-layer allocation applies to unstructured sparsity, not to nm")
            }
            r.sparsify = c
        }
        func perplexity(_ reader: inout MappingReader, _ defaults: PerplexityConfig) throws -> PerplexityConfig? {
            guard let v = reader.value("perplexity") else { return defaults }
            if case .scalar(let sc) = v, ["false", "no", "off"].contains(sc.string.lowercased()) { return nil }
            guard var p = try reader.mapping("perplexity") else { return defaults }
            var out = defaults
            out.datasets = try p.stringList("datasets", allowed: Self.perplexityDatasets) ?? defaults.datasets
            out.window = try p.int("window", range: 2...65_536) ?? defaults.window
            out.windows = try p.int("windows", range: 1...1_000_000) ?? defaults.windows
            try p.finish()
            return out
        }
        if var s = try stages.mapping("sweep") {
            var c = SweepConfig()
            if let m = try s.stringList("methods", allowed: SweepMethod.allNames) { c.methods = m.map { SweepMethod(rawValue: $0)! } }
            c.levels = try s.doubleList("levels", min: 0, max: 1) ?? c.levels
            c.perplexity = try perplexity(&s, c.perplexity) ?? c.perplexity
            c.calibration = try calibration(&s, c.calibration)
            c.seed = UInt64(try s.int("seed", range: 0...Int.max) ?? Int(seed))
            try s.finish()
            r.sweep = c
        }
        if var s = try stages.mapping("finetune") {
            var c = FinetuneConfig()
            if let d = try s.string("data") { c.data = ["wikitext2", "ptb"].contains(d) ? d : resolve(d) }
            if checkFiles, !["wikitext2", "ptb"].contains(c.data), !FileManager.default.fileExists(atPath: c.data) {
                throw s.error(at: s.value("data"), "stages.finetune.data: \(c.data) does not exist")
            }
            c.format = try s.choice("format", ["text", "alpaca"]) ?? "text"
            c.trainOnInputs = try s.bool("train_on_inputs") ?? false
            if c.format == "alpaca" && ["wikitext2", "ptb"].contains(c.data) {
                throw s.error(at: s.value("format"), "stages.finetune: format alpaca needs `data:` to name an Alpaca JSON file")
            }
            var t = c.training
            t.dataOffset =
                try s.int("data_offset", range: 0...Int(Int32.max))
                ?? TrainingConfig.defaultDataOffset(
                    evaluationText: ["wikitext2", "ptb"].contains(c.data) || PerplexityDataset.isEvaluationText(c.data))
            c.lora.rank = try s.int("rank", range: 1...4096) ?? c.lora.rank
            c.lora.alpha = Float(try s.double("alpha", min: 0) ?? Double(c.lora.alpha))
            c.lora.dropout = Float(try s.double("dropout", min: 0, max: 1, openUpper: true) ?? Double(c.lora.dropout))
            let targets = ["q", "k", "v", "o", "gate", "up", "down"]
            c.lora.targets = try s.stringList("targets", allowed: targets) ?? c.lora.targets
            t.learningRate = Float(try s.double("lr", min: 1e-12, max: 10) ?? Double(t.learningRate))
            if let v = try s.choice("schedule", LRSchedule.allCases.map(\.rawValue)) { t.schedule = LRSchedule(rawValue: v)! }
            t.warmupSteps = try s.int("warmup", range: 0...10_000_000) ?? 0
            t.weightDecay = Float(try s.double("weight_decay", min: 0, max: 10) ?? 0)
            t.maxGradNorm = Float(try s.double("clip", min: 0) ?? 0)
            t.batchSize = try s.int("batch", range: 1...4096) ?? t.batchSize
            t.length = try s.int("length", range: 2...65_536) ?? t.length
            t.accumulation = try s.int("accumulation", range: 1...4096) ?? 1
            t.steps = try s.int("steps", range: 1...10_000_000) ?? t.steps
            t.saveEvery = try s.int("save_every", range: 1...10_000_000) ?? t.saveEvery
            t.evaluateEvery = try s.int("eval_every", range: 0...10_000_000) ?? t.evaluateEvery
            t.validationWindows = try s.int("val_windows", range: 0...100_000) ?? t.validationWindows
            t.seed = UInt64(try s.int("seed", range: 0...Int.max) ?? Int(seed))
            c.maxSeconds = try s.double("max_seconds", min: 1)
            c.training = t
            try s.finish()
            r.finetune = c
        }
        if let s = try stages.mapping("merge") { try s.finish(); r.merge = true }
        if var s = try stages.mapping("evaluate") {
            var c = EvaluateConfig()
            c.models = try s.stringList("models", allowed: ["base", "pruned", "final"]) ?? c.models
            c.perplexity = try perplexity(&s, PerplexityConfig())
            let taskNames = ZeroShotTasks.names
            if let t = try s.stringList("tasks", allowed: taskNames + ["all"]) { c.tasks = t.contains("all") ? taskNames : t }
            c.limit = try s.int("limit", range: 1...10_000_000)
            if var g = try s.mapping("generation") {
                c.generation.prompts = try g.stringList("prompts") ?? []
                c.generation.maxTokens = try g.int("max_tokens", range: 1...4096) ?? 32
                try g.finish()
            }
            try s.finish()
            r.evaluate = c
        }
        try stages.finish()
        try top.finish()

        // Checks across stages, located at the stage that cannot run.
        if r.prune != nil && r.importance == nil {
            throw stages.error(at: stages.keyNode("prune"), "stage `prune` needs an `importance` stage (which criterion ranks the groups?)")
        }
        if let p = r.prune, r.importance?.criterion == .obs, p.mode != .uniform || p.allocation != nil || p.merge != nil {
            throw stages.error(
                at: stages.keyNode("prune"),
                "criterion `obs` chooses units layer by layer: stages.prune needs mode `uniform`, allocation `uniform` and merge `remove`")
        }
        if r.merge && r.finetune == nil {
            throw stages.error(at: stages.keyNode("merge"), "stage `merge` needs a `finetune` stage (there are no adapters to merge)")
        }
        if r.stages == [.load] {
            throw stages.error(at: stagesNode, "the recipe has no stages to run (add prune, sparsify, finetune, evaluate, …)")
        }
        if checkFiles {
            try r.checkData(stages: stages)
        }
        return r
    }

    public static let perplexityDatasets = PerplexityDataset.allCases.map(\.rawValue)

    /// The text file of a perplexity dataset under the data folder.
    public func datasetPath(_ name: String) -> String {
        (PerplexityDataset(rawValue: name) ?? .wikitext2).path(data: data)
    }

    /// The data files a stage reads: what validation checks before anything runs and what the stage's key fingerprints
    /// (one list for both). The model is the load stage's.
    public func inputFiles(of stage: StageKind) -> [String] {
        let calibrationDefault = datasetPath("wikitext2")
        switch stage {
        case .load: return [model]
        case .graph, .merge: return []
        case .importance:
            guard let i = importance, i.criterion.needs(i.options ?? CriterionOptions()).readsCalibration else { return [] }
            return [i.calibration.file ?? calibrationDefault]
        case .prune:
            guard let p = prune else { return [] }
            var files: [String] = []
            if p.allocation == "search" { files.append(datasetPath("wikitext2")) }
            // The OBS update reads the importance stage's calibration windows.
            let sequential = importance.map { $0.criterion.needs($0.options ?? CriterionOptions()).contains(.sequential) } ?? false
            if p.compensate ?? sequential, let i = importance { files.append(i.calibration.file ?? calibrationDefault) }
            return files
        case .sparsify:
            guard let s = sparsify, s.method.needsCalibration || (AllocationMethod(rawValue: s.allocation)?.needsCalibration ?? false)
            else {
                return []
            }
            return [s.calibration.file ?? calibrationDefault]
        case .sweep:
            guard let s = sweep else { return [] }
            var files = s.perplexity.datasets.map(datasetPath)
            if s.methods.contains(where: \.needsCalibration) { files.append(s.calibration.file ?? calibrationDefault) }
            return files
        case .finetune:
            guard let f = finetune else { return [] }
            return [["wikitext2", "ptb"].contains(f.data) ? datasetPath(f.data) : f.data]
        case .evaluate:
            guard let e = evaluate else { return [] }
            return (e.perplexity?.datasets ?? []).map(datasetPath)
                + e.tasks.compactMap { try? ZeroShotTaskFile.path(task: $0, data: data) }
        }
    }

    /// Every data file the stages will read must exist before anything runs.
    func checkData(stages: MappingReader) throws {
        for stage in self.stages where stage != .load {
            for path in inputFiles(of: stage) where !FileManager.default.fileExists(atPath: path) {
                throw stages.error(
                    at: stages.keyNode(stage.rawValue),
                    "stage `\(stage.rawValue)` reads \(path), which does not exist (is the data folder \(data) right? set `data:` or "
                        + "pass --data)"
                )
            }
        }
    }

    static func yamlError(_ e: YamlError, file: String) -> RecipeError {
        switch e {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            return RecipeError(
                file: file, line: mark.line, column: mark.column,
                message: "not valid YAML: \(problem)" + (context.map { " (\($0.text))" } ?? ""))
        case let .duplicatedKeysInMapping(duplicates, context):
            return RecipeError(
                file: file, line: context.mark.line, column: context.mark.column,
                message: "duplicate key(s) \(duplicates.map { "`\($0)`" }.joined(separator: ", ")) in one mapping")
        case let .reader(problem, _, _, _):
            return RecipeError(file: file, message: "not valid YAML: \(problem)")
        default:
            return RecipeError(file: file, message: "not valid YAML: \(e)")
        }
    }

}

extension Recipe {
    /// A recipe with only a sweep stage (what `topiary sweep` runs).
    public static func sweep(model: String, data: String, config: SweepConfig, name: String) throws -> Recipe {
        guard FileManager.default.fileExists(atPath: model) else { throw RecipeError(file: model, message: "no such model file") }
        var r = Recipe(name: name, description: nil, model: model, data: data, seed: 0, threads: nil, file: "(command line)")
        r.sweep = config
        return r
    }
}
