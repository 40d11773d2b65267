import Foundation
import TopiaryCore
import TopiaryEval
import TopiaryPrune
import TopiaryRecover
import Yams

/// A whole compression run, read from YAML (schema version 1).
public struct Recipe: Sendable {
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

    /// Each stage's configuration (a request, or ``NoSettings``), by stage; `load` is always there.
    public var configurations: [StageKind: any StageConfiguration] = [.load: NoSettings()]

    /// The stages this recipe runs, in order (`load` always first).
    public var stages: [StageKind] { StageKind.allCases.filter { configurations[$0] != nil } }

    public var importance: ImportanceConfig? {
        get { configurations[.importance] as? ImportanceConfig }
        set { configurations[.importance] = newValue }
    }
    public var prune: PruneConfig? {
        get { configurations[.prune] as? PruneConfig }
        set { configurations[.prune] = newValue }
    }
    public var sparsify: SparsifyConfig? {
        get { configurations[.sparsify] as? SparsifyConfig }
        set { configurations[.sparsify] = newValue }
    }
    public var sweep: SweepConfig? {
        get { configurations[.sweep] as? SweepConfig }
        set { configurations[.sweep] = newValue }
    }
    public var finetune: FinetuneConfig? {
        get { configurations[.finetune] as? FinetuneConfig }
        set { configurations[.finetune] = newValue }
    }
    /// The distill stage's request: a finetune request with its teacher's settings.
    public var distill: FinetuneConfig? {
        get { configurations[.distill] as? FinetuneConfig }
        set { configurations[.distill] = newValue }
    }
    public var evaluate: EvaluateConfig? {
        get { configurations[.evaluate] as? EvaluateConfig }
        set { configurations[.evaluate] = newValue }
    }

    init(name: String, description: String?, model: String, data: String, seed: UInt64, threads: Int?, file: String) {
        self.name = name
        self.description = description
        self.model = model
        self.data = data
        self.seed = seed
        self.threads = threads
        self.file = file
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
            throw top.error(
                at: node,
                "missing `model` (a GGUF file, a Topiary checkpoint folder or a Hugging Face model folder, relative to the recipe)")
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
            data = DefaultLocations.data
        }
        let seed = UInt64(try top.int("seed", range: 0...Int.max) ?? 0)
        let threads = try top.int("threads", range: 1...1024)
        guard let stagesNode = top.value("stages") else { throw top.error(at: node, "missing `stages` (e.g. prune, finetune, evaluate)") }
        var stages = try MappingReader(stagesNode, file: file, path: "stages")
        let known = PipelineStages.names
        for key in stages.keys where !known.contains(key) {
            throw stages.error(
                at: stages.keyNode(key), "unknown stage `\(key)`" + didYouMean(key, known.filter { $0 != "load" } + ["load"]))
        }
        var r = Recipe(name: name, description: description, model: model, data: data, seed: seed, threads: threads, file: file)

        let context = RecipeContext(file: file, root: node, seed: seed, checkFiles: checkFiles, resolveRelative: resolve)
        for stage in PipelineStages.all {
            guard var s = try stages.mapping(stage.name) else { continue }
            let configuration = try stage.read(&s, context)
            try s.finish()
            r.configurations[StageKind(stage.name)!] = configuration
        }
        try stages.finish()
        try top.finish()

        // Checks across stages, located at the stage that cannot run.
        for kind in r.stages {
            if let problem = kind.implementation.problem(in: r) { throw stages.error(at: stages.keyNode(kind.rawValue), problem) }
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
    /// (one list for both).
    public func inputFiles(of stage: StageKind) -> [String] { stage.implementation.inputFiles(self) }

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
