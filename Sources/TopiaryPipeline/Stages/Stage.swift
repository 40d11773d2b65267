import Foundation
import TopiaryEval
import TopiaryPrune
import Yams

/// One stage of a run. A stage reads its mapping of a recipe into its configuration (a request), says what it needs
/// from the stages before it, which data files it reads (what validation checks before anything runs and what its key
/// fingerprints: one list for both), which part of the recipe goes into its key, runs, and hands its outputs on to the
/// stages after it — also when it finished in an earlier run and is skipped.
///
/// Adding a stage is one file with a type conforming to this and one line in ``PipelineStages/all``.
protocol PipelineStage {
    /// The stage's key under `stages:` in a recipe and its folder's suffix (`NN-name`).
    static var name: String { get }
    /// Reads the stage's mapping of a recipe (`reader` is finished by the caller).
    static func read(_ reader: inout MappingReader, _ context: RecipeContext) throws -> any StageConfiguration
    /// Why the stage cannot run with the recipe's other stages (nil: it can), shown at the stage's key.
    static func problem(in recipe: Recipe) -> String?
    /// The data files the stage reads.
    static func inputFiles(_ recipe: Recipe) -> [String]
    /// What of the recipe goes into the stage's key (JSON).
    static func keyConfiguration(_ recipe: Recipe) throws -> String
    static func run(_ pipeline: Pipeline, dir: String, continuing: Bool) throws -> Pipeline.Outcome
    /// Takes on the effect of the stage when it finished earlier with the same key.
    static func adopt(_ pipeline: Pipeline, dir: String)
    /// One line about the stage's work for the report's table of stages.
    static func note(_ summary: StageSummary) -> String
}

extension PipelineStage {
    static func problem(in recipe: Recipe) -> String? { nil }
    static func inputFiles(_ recipe: Recipe) -> [String] { [] }
    static func keyConfiguration(_ recipe: Recipe) throws -> String { try Self.json(recipe.configurations[StageKind(name)!]) }
    static func adopt(_ pipeline: Pipeline, dir: String) {}
    static func note(_ summary: StageSummary) -> String { summary.fields.params.map { "params \($0.formatted())" } ?? "" }

    /// Sorted-key JSON, as stage keys are written.
    static func json(_ value: (any Encodable)?) throws -> String {
        guard let value else { return "{}" }
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try e.encode(value), as: UTF8.self)
    }
}

/// What a stage's mapping holds once read: a request, or nothing.
public protocol StageConfiguration: Encodable, Sendable {}

/// The configuration of a stage that has no settings (`graph: {}`, `merge: {}`).
public struct NoSettings: StageConfiguration, Equatable {
    public init() {}
    public func encode(to encoder: Encoder) throws { _ = encoder.container(keyedBy: AnyKey.self) }
}

extension ImportanceConfig: StageConfiguration {}
extension PruneConfig: StageConfiguration {}
extension SparsifyConfig: StageConfiguration {}
extension SweepConfig: StageConfiguration {}
extension FinetuneConfig: StageConfiguration {}
extension EvaluateConfig: StageConfiguration {}

/// The registry of stages, in the order a run executes them.
enum PipelineStages {
    static let all: [any PipelineStage.Type] = [
        LoadStage.self, GraphStage.self, ImportanceStage.self, PruneStage.self, SparsifyStage.self, SweepStage.self,
        FinetuneStage.self, DistillStage.self, MergeStage.self, EvaluateStage.self, ExportStage.self,
    ]

    public static var names: [String] { all.map { $0.name } }

    static func named(_ name: String) -> (any PipelineStage.Type)? { all.first { $0.name == name } }

    /// Formatting for the stages' notes.
    static func number(_ v: Int?) -> String { v.map { "\($0)" } ?? "?" }
    static func decimal(_ v: Double?, _ f: String = "%.4f") -> String? { v.map { String(format: f, $0) } }
}

/// A stage by name; only registered names exist, ordered as a run executes them.
public struct StageKind: RawRepresentable, Hashable, Codable, Sendable, Comparable, CaseIterable, CustomStringConvertible {
    public let rawValue: String

    public init?(rawValue: String) {
        guard PipelineStages.named(rawValue) != nil else { return nil }
        self.rawValue = rawValue
    }

    init?(_ name: String) { self.init(rawValue: name) }

    private init(registered name: String) { rawValue = name }

    public static var allCases: [StageKind] { PipelineStages.names.map(StageKind.init(registered:)) }
    public var description: String { rawValue }
    var implementation: any PipelineStage.Type { PipelineStages.named(rawValue)! }
    var order: Int { PipelineStages.names.firstIndex(of: rawValue)! }

    public static func < (a: StageKind, b: StageKind) -> Bool { a.order < b.order }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        let name = try c.decode(String.self)
        guard let k = StageKind(rawValue: name) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "unknown stage '\(name)'")
        }
        self = k
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }

    // The stages the pipeline itself refers to (the model's flow between them).
    public static let load = StageKind(registered: "load")
    public static let graph = StageKind(registered: "graph")
    public static let importance = StageKind(registered: "importance")
    public static let prune = StageKind(registered: "prune")
    public static let sparsify = StageKind(registered: "sparsify")
    public static let sweep = StageKind(registered: "sweep")
    public static let finetune = StageKind(registered: "finetune")
    public static let distill = StageKind(registered: "distill")
    public static let merge = StageKind(registered: "merge")
    public static let evaluate = StageKind(registered: "evaluate")
}

/// What a stage's reader gets from the recipe: its file, seed and paths, and the readers of shared parts.
struct RecipeContext {
    let file: String
    let root: Node
    /// The recipe's seed (a stage's default seed).
    public let seed: UInt64
    let checkFiles: Bool
    let resolveRelative: (String) -> String

    /// A path relative to the recipe's folder, made absolute.
    public func resolve(_ path: String) -> String { resolveRelative(path) }

    /// A `calibration:` mapping over `defaults`.
    public func calibration(_ reader: inout MappingReader, _ defaults: CalibrationConfig) throws -> CalibrationConfig {
        guard var c = try reader.mapping("calibration") else { return defaults }
        var out = defaults
        if let f = try c.string("file") { out.file = resolve(f) }
        out.windows = try c.int("windows") ?? defaults.windows
        out.length = try c.int("length") ?? defaults.length
        out.offset = try c.int("offset") ?? defaults.offset
        try c.finish()
        if checkFiles, let f = out.file, !FileManager.default.fileExists(atPath: f) {
            throw c.error(at: c.node, "calibration file \(f) does not exist")
        }
        return out
    }

    /// A `perplexity:` mapping over `defaults`; nil for `perplexity: false`.
    public func perplexity(_ reader: inout MappingReader, _ defaults: PerplexityConfig) throws -> PerplexityConfig? {
        guard let v = reader.value("perplexity") else { return defaults }
        if case .scalar(let sc) = v, ["false", "no", "off"].contains(sc.string.lowercased()) { return nil }
        guard var p = try reader.mapping("perplexity") else { return defaults }
        var out = defaults
        out.datasets = try p.stringList("datasets", allowed: Recipe.perplexityDatasets) ?? defaults.datasets
        out.window = try p.int("window") ?? defaults.window
        out.windows = try p.int("windows") ?? defaults.windows
        try p.finish()
        return out
    }

    /// The request's own checks, each shown at the key at fault (or at the stage, for a combination of settings).
    public func validated(_ stage: String, _ check: () throws -> Void) throws {
        do { try check() } catch let e as RequestError {
            throw Recipe.located(e, under: stage.isEmpty ? "stages" : "stages." + stage, root: root, file: file)
        }
    }

    /// Whether the files a stage names are checked to exist while reading.
    public var checksFiles: Bool { checkFiles }
}
