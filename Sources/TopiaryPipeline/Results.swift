import Foundation
import TopiaryCore
import TopiaryModels
import TopiaryPrune

/// The typed records a run writes (`manifest.json` per stage, `importance.json`, `evaluation.json`, `sweep.json`,
/// `results.json`) and reads back: one Codable type per file, so that a key is spelled in one place.

/// Metrics of one model by name (`params`, `wikitext2_ppl`, `<task>_acc`, `<task>_acc_norm`, `average_acc`).
public typealias Metrics = [String: Double]

/// Per-layer shapes of a model.
public struct LayerShapes: Codable, Sendable, Equatable {
    public var heads: [Int]
    public var kvHeads: [Int]
    public var intermediateSizes: [Int]
    public var hiddenSize: Int
    public var headDim: Int
    public var layers: Int

    public init(_ c: ModelConfig) {
        heads = c.heads
        kvHeads = c.kvHeads
        intermediateSizes = c.intermediateSizes
        hiddenSize = c.hiddenSize
        headDim = c.headDim
        layers = c.layerCount
    }

    enum CodingKeys: String, CodingKey {
        case heads, layers
        case kvHeads = "kv_heads", intermediateSizes = "intermediate_sizes", hiddenSize = "hidden_size", headDim = "head_dim"
    }
}

/// What a stage reports about its work (each stage fills its own fields; the evaluate stage's metrics per model label
/// are written at the top level, as `{"final": {...}, "pruned": {...}}`).
public struct StageSummary: Codable, Sendable, Equatable {
    public struct Fields: Codable, Sendable, Equatable {
        public var seconds: Double?
        // load
        public var model: String?
        public var params: Int?
        public var nonEmbeddingParams: Int?
        public var config: LayerShapes?
        // graph, importance
        public var groups: Int?
        public var kinds: [String: Int]?
        public var criterion: String?
        public var calibrationLoss: Double?
        // prune
        public var paramsBefore: Int?
        public var paramsAfter: Int?
        public var removedFractionNonEmbedding: Double?
        public var before: LayerShapes?
        public var after: LayerShapes?
        // sparsify
        public var method: String?
        public var sparsity: Double?
        public var achievedSparsity: Double?
        public var allocation: String?
        public var nm: String?
        public var layerSparsity: [Double]?
        /// The allocator's per-layer statistic under its record key (`layer_alphas`, `layer_outlier_ratios`).
        public var layerStatistics: [String: [Double]] = [:]
        // sweep
        public var cells: Int?
        // finetune, merge
        public var steps: Int?
        public var trainableParams: Int?
        public var loss: Double?
        public var firstLoss: Double?
        public var validationLoss: Double?
        public var mergedAdapters: Int?

        public init() {}

        enum CodingKeys: String, CodingKey {
            case seconds, model, params, config, groups, kinds, criterion, before, after, method, sparsity, allocation, nm, cells, steps,
                loss
            case nonEmbeddingParams = "non_embedding_params", calibrationLoss = "calibration_loss", paramsBefore = "params_before"
            case paramsAfter = "params_after", removedFractionNonEmbedding = "removed_fraction_non_embedding"
            case achievedSparsity = "achieved_sparsity", layerSparsity = "layer_sparsity"
            case trainableParams = "trainable_params", firstLoss = "first_loss"
            case validationLoss = "validation_loss", mergedAdapters = "merged_adapters"
        }
    }

    public var fields = Fields()
    /// The evaluate stage: metrics by model label.
    public var models: [String: Metrics] = [:]
    public static let modelLabels = ["base", "pruned", "final"]

    public init(_ fields: Fields = .init(), models: [String: Metrics] = [:]) {
        self.fields = fields
        self.models = models
    }

    public init(from decoder: Decoder) throws {
        fields = try Fields(from: decoder)
        let c = try decoder.container(keyedBy: AnyKey.self)
        for label in Self.modelLabels {
            if let m = try c.decodeIfPresent(Metrics.self, forKey: AnyKey(label)) { models[label] = m }
        }
        fields.layerStatistics = try LayerStatistics.decode(c)
    }

    public func encode(to encoder: Encoder) throws {
        try fields.encode(to: encoder)
        var c = encoder.container(keyedBy: AnyKey.self)
        for (label, m) in models { try c.encode(m, forKey: AnyKey(label)) }
        try LayerStatistics.encode(fields.layerStatistics, into: &c)
    }
}

/// Per-layer statistics of allocators, each written at the top level of its record under the allocator's key.
enum LayerStatistics {
    static var keys: [String] { Allocators.all.compactMap(\.recordKey) }

    static func decode(_ c: KeyedDecodingContainer<AnyKey>) throws -> [String: [Double]] {
        var out: [String: [Double]] = [:]
        for k in keys { if let v = try c.decodeIfPresent([Double].self, forKey: AnyKey(k)) { out[k] = v } }
        return out
    }

    static func encode(_ statistics: [String: [Double]], into c: inout KeyedEncodingContainer<AnyKey>) throws {
        for (k, v) in statistics { try c.encode(v, forKey: AnyKey(k)) }
    }
}

/// A coding key made from any string (the keys chosen by data: model labels, task names).
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// A file a stage wrote, with its size (checked before the stage counts as done).
public struct OutputFile: Codable, Sendable, Equatable {
    public var name: String
    public var bytes: Int
}

/// A JSON value whose shape only its writer knows (a stage's configuration, kept verbatim in its manifest).
public indirect enum JSONValue: Codable, Sendable, Equatable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let n = try? c.decode(Double.self) {
            self = .number(n)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case let .bool(b): try c.encode(b)
        case let .number(n): try c.encode(n)
        case let .string(s): try c.encode(s)
        case let .array(a): try c.encode(a)
        case let .object(o): try c.encode(o)
        }
    }

    /// The value at `key` of an object.
    public subscript(key: String) -> JSONValue? {
        if case let .object(o) = self { return o[key] }
        return nil
    }
}

/// `NN-stage/manifest.json`, written last: a stage is done when it exists, its key matches and its outputs are there.
public struct StageManifest: Codable, Sendable {
    public var stage: String
    public var key: String
    public var config: JSONValue
    public var inputs: [String: String]
    public var finished: String
    public var seconds: Double
    public var summary: StageSummary
    public var outputs: [OutputFile]
    public var status: StageStatus
}

/// `NN-stage/stage.json`: the key of the attempt under way (an interrupted attempt with the same key continues).
struct StageMarker: Codable {
    var key: String
    var stage: String
    var started: String
}

/// One stage in `results.json`.
public struct StageRecord: Codable, Sendable {
    public var stage: String
    public var directory: String
    public var status: StageStatus
    public var seconds: Double
    public var summary: StageSummary
}

/// `results.json`: every metric of the final model, per-model evaluations and the stages.
public struct RunResults: Codable, Sendable {
    public var recipe: String
    public var recipeFile: String
    public var model: String
    public var finalModel: String
    public var metrics: Metrics
    public var models: [String: ModelEvaluation]
    public var stages: [StageRecord]
    public var finished: String

    enum CodingKeys: String, CodingKey {
        case recipe, model, metrics, models, stages, finished
        case recipeFile = "recipe_file", finalModel = "final_model"
    }
}

/// One model's evaluation: the numbers (`metrics`) and how they were measured (`details`).
public struct ModelEvaluation: Codable, Sendable, Equatable {
    public struct PerplexityDetail: Codable, Sendable, Equatable {
        public var ppl: Double
        public var windows: Int
        public var window: Int
        public var predictions: Int
        public var seconds: Double
    }

    public struct TaskDetail: Codable, Sendable, Equatable {
        public var acc: Double
        public var accStderr: Double
        public var accNorm: Double?
        public var accNormStderr: Double?
        public var n: Int
        public var seconds: Double
        enum CodingKeys: String, CodingKey {
            case acc, n, seconds
            case accStderr = "acc_stderr", accNorm = "acc_norm", accNormStderr = "acc_norm_stderr"
        }
    }

    public struct Generation: Codable, Sendable, Equatable {
        public var prompt: String
        public var completion: String
    }

    public struct Details: Codable, Sendable, Equatable {
        /// Perplexity by dataset name.
        public var perplexity: [String: PerplexityDetail] = [:]
        public var tasks: [String: TaskDetail]?
        /// Items per task (nil: every item); present when tasks ran.
        public var limit: Int?
        public var tasksRan = false
        public var generations: [Generation]?

        public init() {}

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: AnyKey.self)
            tasks = try c.decodeIfPresent([String: TaskDetail].self, forKey: AnyKey("tasks"))
            tasksRan = c.contains(AnyKey("limit"))
            limit = try c.decodeIfPresent(Int.self, forKey: AnyKey("limit"))
            generations = try c.decodeIfPresent([Generation].self, forKey: AnyKey("generations"))
            for key in c.allKeys where !["tasks", "limit", "generations"].contains(key.stringValue) {
                perplexity[key.stringValue] = try c.decode(PerplexityDetail.self, forKey: key)
            }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: AnyKey.self)
            for (d, p) in perplexity { try c.encode(p, forKey: AnyKey(d)) }
            try c.encodeIfPresent(tasks, forKey: AnyKey("tasks"))
            if tasksRan {
                if let limit { try c.encode(limit, forKey: AnyKey("limit")) } else { try c.encodeNil(forKey: AnyKey("limit")) }
            }
            try c.encodeIfPresent(generations, forKey: AnyKey("generations"))
        }

        /// Both parts of an evaluation side by side (perplexity and generations, then the tasks).
        mutating func merge(_ other: Details) {
            for (k, v) in other.perplexity { perplexity[k] = v }
            if other.tasks != nil { tasks = other.tasks }
            if other.tasksRan { tasksRan = true; limit = other.limit }
            if other.generations != nil { generations = other.generations }
        }
    }

    public var label: String
    public var path: String
    public var adapters: String?
    public var metrics: Metrics
    public var details: Details

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: AnyKey.self)
        try c.encode(label, forKey: AnyKey("label"))
        try c.encode(path, forKey: AnyKey("path"))
        if let adapters { try c.encode(adapters, forKey: AnyKey("adapters")) } else { try c.encodeNil(forKey: AnyKey("adapters")) }
        try c.encode(metrics, forKey: AnyKey("metrics"))
        try c.encode(details, forKey: AnyKey("details"))
    }

    /// One model's evaluation parts combined: metrics and details side by side.
    func merged(with other: ModelEvaluation) -> ModelEvaluation {
        var out = self
        for (k, v) in other.metrics { out.metrics[k] = v }
        out.details.merge(other.details)
        return out
    }
}

/// The evaluate stage's `evaluation.json`.
public struct EvaluationFile: Codable, Sendable {
    public var models: [String: ModelEvaluation]
    public var hellaswagNote: String
    enum CodingKeys: String, CodingKey {
        case models
        case hellaswagNote = "hellaswag_note"
    }
}

/// The importance stage's `importance.json`: every ranked group's scores (none for a sequential criterion).
public struct ImportanceFile: Codable, Sendable {
    public struct Group: Codable, Sendable {
        public var id: Int
        public var kind: String
        public var layer: Int
        public var units: Int
        public var scores: [Double]
    }

    public struct CalibrationInfo: Codable, Sendable, Equatable {
        public var windows: Int
        public var length: Int
        public var offset: Int
        public var file: String

        public init(windows: Int, length: Int, offset: Int, file: String) {
            self.windows = windows
            self.length = length
            self.offset = offset
            self.file = file
        }

        /// What a calibration set was made of.
        public init(_ set: CalibrationSet) { self.init(windows: set.windows, length: set.length, offset: set.offset, file: set.source) }
    }

    public var criterion: String
    public var aggregation: String
    public var layers: [Int]
    public var groups: [Group]
    public var calibration: CalibrationInfo?
    public var calibrationLoss: Double?

    enum CodingKeys: String, CodingKey {
        case criterion, aggregation, layers, groups, calibration
        case calibrationLoss = "calibration_loss"
    }
}

/// One cell of a sweep (`cell-<method>-<level>.json`).
public struct SweepPoint: Codable, Sendable {
    public var method: String
    public var level: Double
    public var notApplicable: String?
    public var achievedSparsity: Double?
    public var removedFraction: Double?
    public var sparsifySeconds: Double?
    /// Perplexity by dataset name (written as `<dataset>_ppl`).
    public var perplexity: [String: Double] = [:]
    public var generation: String?

    public init(method: String, level: Double) {
        self.method = method
        self.level = level
    }

    static let fixed = ["method", "level", "not_applicable", "achieved_sparsity", "removed_fraction", "sparsify_seconds", "generation"]

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        method = try c.decode(String.self, forKey: AnyKey("method"))
        level = try c.decode(Double.self, forKey: AnyKey("level"))
        notApplicable = try c.decodeIfPresent(String.self, forKey: AnyKey("not_applicable"))
        achievedSparsity = try c.decodeIfPresent(Double.self, forKey: AnyKey("achieved_sparsity"))
        removedFraction = try c.decodeIfPresent(Double.self, forKey: AnyKey("removed_fraction"))
        sparsifySeconds = try c.decodeIfPresent(Double.self, forKey: AnyKey("sparsify_seconds"))
        generation = try c.decodeIfPresent(String.self, forKey: AnyKey("generation"))
        for key in c.allKeys where key.stringValue.hasSuffix("_ppl") {
            perplexity[String(key.stringValue.dropLast(4))] = try c.decode(Double.self, forKey: key)
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: AnyKey.self)
        try c.encode(method, forKey: AnyKey("method"))
        try c.encode(level, forKey: AnyKey("level"))
        try c.encodeIfPresent(notApplicable, forKey: AnyKey("not_applicable"))
        try c.encodeIfPresent(achievedSparsity, forKey: AnyKey("achieved_sparsity"))
        try c.encodeIfPresent(removedFraction, forKey: AnyKey("removed_fraction"))
        try c.encodeIfPresent(sparsifySeconds, forKey: AnyKey("sparsify_seconds"))
        for (d, p) in perplexity { try c.encode(p, forKey: AnyKey(d + "_ppl")) }
        try c.encodeIfPresent(generation, forKey: AnyKey("generation"))
    }
}

/// The sweep stage's `sweep.json`.
public struct SweepFile: Codable, Sendable {
    public var methods: [String]
    public var levels: [Double]
    public var datasets: [String]
    public var window: Int
    public var windows: Int
    public var prompt: String
    public var points: [SweepPoint]
}

/// The sparsify stage's `sparsify.json` (beside the sparsified checkpoint).
public struct SparsifyRecord: Codable, Sendable {
    public var method: String
    public var sparsity: Double
    public var achievedSparsity: Double
    public var seconds: Double
    public var allocation: String
    public var nm: String?
    public var layerSparsity: [Double]?
    /// The allocator's per-layer statistic under its record key (`layer_alphas`, `layer_outlier_ratios`).
    public var layerStatistics: [String: [Double]] = [:]
    public var trueSequential: Bool?
    public var gamma: Double?
    public var calibration: ImportanceFile.CalibrationInfo?
    /// A streamed sparsify: the GGUF storage type of the written matrices and how many times a layer was loaded.
    public var ggufType: String?
    public var layerLoads: Int?

    public init(
        method: String, sparsity: Double, achievedSparsity: Double, seconds: Double, allocation: String, nm: String?,
        layerSparsity: [Double]?
    ) {
        self.method = method
        self.sparsity = sparsity
        self.achievedSparsity = achievedSparsity
        self.seconds = seconds
        self.allocation = allocation
        self.nm = nm
        self.layerSparsity = layerSparsity
    }

    enum CodingKeys: String, CodingKey {
        case method, sparsity, seconds, allocation, nm, gamma, calibration
        case achievedSparsity = "achieved_sparsity", layerSparsity = "layer_sparsity", trueSequential = "true_sequential"
        case ggufType = "gguf_type", layerLoads = "layer_loads"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        method = try c.decode(String.self, forKey: .method)
        sparsity = try c.decode(Double.self, forKey: .sparsity)
        achievedSparsity = try c.decode(Double.self, forKey: .achievedSparsity)
        seconds = try c.decode(Double.self, forKey: .seconds)
        allocation = try c.decode(String.self, forKey: .allocation)
        nm = try c.decodeIfPresent(String.self, forKey: .nm)
        layerSparsity = try c.decodeIfPresent([Double].self, forKey: .layerSparsity)
        trueSequential = try c.decodeIfPresent(Bool.self, forKey: .trueSequential)
        gamma = try c.decodeIfPresent(Double.self, forKey: .gamma)
        calibration = try c.decodeIfPresent(ImportanceFile.CalibrationInfo.self, forKey: .calibration)
        ggufType = try c.decodeIfPresent(String.self, forKey: .ggufType)
        layerLoads = try c.decodeIfPresent(Int.self, forKey: .layerLoads)
        layerStatistics = try LayerStatistics.decode(try decoder.container(keyedBy: AnyKey.self))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(method, forKey: .method)
        try c.encode(sparsity, forKey: .sparsity)
        try c.encode(achievedSparsity, forKey: .achievedSparsity)
        try c.encode(seconds, forKey: .seconds)
        try c.encode(allocation, forKey: .allocation)
        try c.encodeIfPresent(nm, forKey: .nm)
        try c.encodeIfPresent(layerSparsity, forKey: .layerSparsity)
        try c.encodeIfPresent(trueSequential, forKey: .trueSequential)
        try c.encodeIfPresent(gamma, forKey: .gamma)
        try c.encodeIfPresent(calibration, forKey: .calibration)
        try c.encodeIfPresent(ggufType, forKey: .ggufType)
        try c.encodeIfPresent(layerLoads, forKey: .layerLoads)
        var any = encoder.container(keyedBy: AnyKey.self)
        try LayerStatistics.encode(layerStatistics, into: &any)
    }
}

extension Pipeline {
    static let jsonEncoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return e
    }()

    /// Writes a record atomically.
    static func write<T: Encodable>(_ value: T, to path: String) throws {
        try AtomicFile.write(try jsonEncoder.encode(value), to: path)
    }

    /// Reads a record; nil when the file is missing, and an error naming the file when it is damaged.
    static func read<T: Decodable>(_ type: T.Type, from path: String) throws -> T? {
        guard let d = FileManager.default.contents(atPath: path) else { return nil }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do { return try decoder.decode(T.self, from: d) } catch {
            throw PipelineError("\(path): damaged or not a Topiary record (\(Checkpoint.describeDecoding(error)))")
        }
    }

    /// Reads a record, or nil when it is missing or damaged (a stage then runs again).
    static func readIfIntact<T: Decodable>(_ type: T.Type, from path: String) -> T? {
        (try? read(type, from: path)) ?? nil
    }
}
