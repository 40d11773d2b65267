import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryModels
import TopiaryTokenizers

/// What happened to a stage in this invocation.
public enum StageStatus: String, Codable, Sendable {
    /// Ran from the start.
    case ran
    /// Continued from a partial run (finetune from its checkpoint, evaluate/sweep from finished items).
    case resumed
    /// Finished earlier with the same inputs: not run again.
    case skipped
}

/// Problems of a run that are not in the recipe itself.
public struct PipelineError: Error, LocalizedError {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var errorDescription: String? { message }
}

/// Runs a recipe's stages in order. Each stage writes into `DIR/NN-stage/` and, last, a `manifest.json` with the
/// key of its inputs (its configuration, the keys of the stages before it, the fingerprints of the files it read),
/// its timings, a summary and the list of files it wrote. A rerun skips every stage whose manifest has the same key;
/// a stage without a manifest (killed) runs again, continuing where it supports that.
public final class Pipeline {
    public static let version = "topiary-pipeline-1"

    public let recipe: Recipe
    public let directory: String
    /// Run every stage again.
    public var force = false
    /// Run this stage and every later one again.
    public var from: StageKind?
    /// Where progress lines go (stderr by default).
    public var log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
    /// Progress bars (off in tests).
    public var showProgress = true

    // The run's state as stages hand it on.
    var current: LoadedModel?
    /// The model on disk that `current` was loaded from (nil once changed in memory and not saved).
    var currentPath: String?
    /// The latest model on disk.
    var modelPath: String
    /// The model after prune/sparsify, before recovery.
    var prunedPath: String?
    /// Finetune's directory while its adapters are not merged.
    var adaptersPath: String?
    var importancePath: String?
    var tokenCache: [String: [Int32]] = [:]
    public private(set) var records: [StageRecord] = []

    public init(recipe: Recipe, directory: String) {
        self.recipe = recipe
        self.directory = (directory as NSString).standardizingPath
        self.modelPath = recipe.model
    }

    public func stageDirectory(_ kind: StageKind) -> String {
        let index = recipe.stages.firstIndex(of: kind)! + 1
        return directory + String(format: "/%02d-", index) + kind.rawValue
    }

    /// Runs (or skips) every stage, then writes `results.json`, `report.md`, `report.html` and `model/`.
    @discardableResult
    public func run() throws -> RunResults {
        if let threads = recipe.threads { BLAS.threads = threads }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if let from, !recipe.stages.contains(from) {
            throw PipelineError(
                "--from \(from.rawValue): the recipe has no such stage (its stages: "
                    + "\(recipe.stages.map(\.rawValue).joined(separator: ", ")))"
            )
        }
        let shard = recipe.sweep?.shard
        if let shard, force || from != nil {
            throw PipelineError("--shard \(shard) computes cells of a shared folder: --force and --from belong to the assembling run")
        }
        try lockRun(shared: shard != nil)
        defer { unlockRun() }
        var upstream = Self.version
        let total = recipe.stages.count
        for (i, kind) in recipe.stages.enumerated() {
            let dir = stageDirectory(kind)
            let config = try stageConfig(kind)
            let inputs = try inputFingerprints(kind)
            let key = Self.hashString(
                [upstream, kind.rawValue, config, inputs.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ";")]
                    .joined(separator: "|"))
            upstream = key
            let rerun = force || (from.map { kind >= $0 } ?? false)
            // Shards of one run share its folder: each stage is checked and set up by one of them at a time.
            var stageLock = shard == nil ? nil : try lockStage(dir)
            defer { if let l = stageLock { unlockStage(l) } }
            if !rerun, let manifest = Self.readManifest(dir), manifest.key == key, Self.outputsPresent(manifest, in: dir) {
                log("[\(i + 1)/\(total)] \(kind.rawValue): done earlier with the same inputs, skipped (\(dir))")
                try adopt(kind, dir: dir)
                records.append(
                    StageRecord(
                        stage: kind.rawValue, directory: dir, status: .skipped, seconds: manifest.seconds,
                        summary: manifest.summary))
                continue
            }
            // A partial earlier attempt with the same key may be continued; anything else starts clean.
            let marker = dir + "/stage.json"
            let sameAttempt = !force && !rerun && Self.readIfIntact(StageMarker.self, from: marker)?.key == key
            if !sameAttempt { try? FileManager.default.removeItem(atPath: dir) }
            try? FileManager.default.removeItem(atPath: dir + "/manifest.json")
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Self.write(StageMarker(key: key, stage: kind.rawValue, started: Self.timestamp()), to: marker)
            log("[\(i + 1)/\(total)] \(kind.rawValue)\(sameAttempt ? " (continuing an interrupted attempt)" : "") → \(dir)")
            if let shard, kind == .sweep {
                // This shard's cells only; the table, the manifest and the later stages are the assembling run's.
                if let l = stageLock { unlockStage(l) }
                stageLock = nil
                let outcome = try runStage(kind, dir: dir, continuing: true)
                log(
                    "shard \(shard): \(outcome.summary.fields.cells ?? 0) cells computed in \(dir); "
                        + "when every shard has finished, the same command without --shard assembles the table")
                return RunResults(
                    recipe: recipe.name, recipeFile: recipe.file, model: recipe.model, finalModel: modelPath, metrics: [:], models: [:],
                    stages: records, finished: Self.timestamp())
            }
            let start = Date()
            var outcome = try runStage(kind, dir: dir, continuing: sameAttempt)
            let seconds = Date().timeIntervalSince(start)
            outcome.summary.fields.seconds = seconds
            let manifest = StageManifest(
                stage: kind.rawValue, key: key,
                config: (try? JSONDecoder().decode(JSONValue.self, from: Data(config.utf8))) ?? .string(config),
                inputs: inputs, finished: Self.timestamp(), seconds: seconds, summary: outcome.summary,
                outputs: try Self.listOutputs(dir), status: outcome.status)
            try Self.write(manifest, to: dir + "/manifest.json")
            records.append(
                StageRecord(stage: kind.rawValue, directory: dir, status: outcome.status, seconds: seconds, summary: outcome.summary))
        }
        try publishModel()
        let results = try writeResults()
        try Report(directory: directory).write()
        log("results: \(directory)/results.json; report: \(directory)/report.html (and report.md)")
        return results
    }

    // MARK: the run's lock

    var lockDescriptor: Int32 = -1

    /// One run per output folder at a time; the shards of one run (`shared`) together.
    func lockRun(shared: Bool = false) throws {
        let path = directory + "/.lock"
        lockDescriptor = open(path, O_CREAT | O_RDWR, 0o644)
        guard lockDescriptor >= 0 else { throw PipelineError("\(path): cannot create the run's lock file") }
        if flock(lockDescriptor, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0 {
            close(lockDescriptor)
            lockDescriptor = -1
            throw PipelineError(
                shared
                    ? "\(directory) is in use by a run without --shard; wait for it or choose another --out"
                    : "\(directory) is in use by another `topiary run` (or shards of one); wait for it or choose another --out")
        }
    }

    /// A stage's lock among the shards of a run (blocking: the first one sets the stage up, the others then find it).
    func lockStage(_ dir: String) throws -> Int32 {
        let path = directory + "/." + (dir as NSString).lastPathComponent + ".lock"
        let fd = open(path, O_CREAT | O_RDWR, 0o644)
        guard fd >= 0 else { throw PipelineError("\(path): cannot create the stage's lock file") }
        guard flock(fd, LOCK_EX) == 0 else {
            close(fd)
            throw PipelineError("\(path): cannot lock the stage")
        }
        return fd
    }

    func unlockStage(_ fd: Int32) {
        flock(fd, LOCK_UN)
        close(fd)
    }

    func unlockRun() {
        if lockDescriptor >= 0 { flock(lockDescriptor, LOCK_UN); close(lockDescriptor); lockDescriptor = -1 }
    }

    // MARK: keys and manifests

    func stageConfig(_ kind: StageKind) throws -> String { try kind.implementation.keyConfiguration(recipe) }

    /// Fingerprints of the files a stage reads (size and modification time; the model's first and last MiB too).
    func inputFingerprints(_ kind: StageKind) throws -> [String: String] {
        var out: [String: String] = [:]
        for f in recipe.inputFiles(of: kind) { out[f] = try Self.fingerprint(f) }
        return out
    }

    static func fingerprint(_ path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw PipelineError("\(path): no such file") }
        if isDirectory.boolValue {
            if HFModelLoader.isHuggingFaceDirectory(path) {
                // A Hugging Face directory: each file's own fingerprint, in name order.
                var parts: [String] = []
                for name in try FileManager.default.contentsOfDirectory(atPath: path).sorted() where !name.hasPrefix(".") {
                    var sub: ObjCBool = false
                    guard FileManager.default.fileExists(atPath: path + "/" + name, isDirectory: &sub), !sub.boolValue else { continue }
                    parts.append(name + "=" + (try fingerprint(path + "/" + name)))
                }
                return String(format: "hf:%016llx", fnv1a64(Data(parts.joined(separator: "\n").utf8)))
            }
            guard let m = FileManager.default.contents(atPath: path + "/manifest.json") else {
                throw PipelineError("\(path): not a complete Topiary checkpoint (no manifest.json)")
            }
            return String(format: "checkpoint:%016llx", fnv1a64(m))
        }
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
        if size <= contentHashLimit {
            // Data files: their whole content, not their dates (a copied or touched file keeps its runs).
            guard let d = FileManager.default.contents(atPath: path) else { throw PipelineError("\(path): cannot be read") }
            return String(format: "%d:%016llx", size, fnv1a64(d))
        }
        let mtime = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        return String(format: "%d:%.0f:%016llx", size, mtime, try sampledHash(path, size: size))
    }

    /// Files up to this size are fingerprinted by their whole content; larger ones (models) by size, date and the
    /// first and last MiB.
    static let contentHashLimit = 16 << 20

    /// FNV-1a of the first MiB, and of the last MiB too for files over 2 MiB.
    static func sampledHash(_ path: String, size: Int) throws -> UInt64 {
        guard let h = FileHandle(forReadingAtPath: path) else { throw PipelineError("\(path): cannot be read") }
        defer { try? h.close() }
        var sample = try h.read(upToCount: 1 << 20) ?? Data()
        if size > 2 << 20 {
            try h.seek(toOffset: UInt64(size - (1 << 20)))
            sample += try h.read(upToCount: 1 << 20) ?? Data()
        }
        return fnv1a64(sample)
    }

    /// Whether `recorded` (a fingerprint from an earlier run, possibly in the older size:date:sample form) names the
    /// same content as the file at `path` has now, whatever its date.
    static func sameContent(_ recorded: String, _ path: String) throws -> Bool {
        let parts = recorded.split(separator: ":")
        if parts.count == 3, let size = Int(parts[0]) {
            let now = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? -1
            guard now == size else { return false }
            return String(format: "%016llx", try sampledHash(path, size: size)) == parts[2]
        }
        return try fingerprint(path) == recorded
    }

    static func hashString(_ s: String) -> String { String(format: "%016llx", fnv1a64(Data(s.utf8))) }

    static func timestamp() -> String { ISO8601DateFormatter().string(from: Date()) }

    static func readManifest(_ dir: String) -> StageManifest? { readIfIntact(StageManifest.self, from: dir + "/manifest.json") }

    /// Every file of the stage folder (recursively) with its size.
    static func listOutputs(_ dir: String) throws -> [OutputFile] {
        var out: [OutputFile] = []
        guard let e = FileManager.default.enumerator(atPath: dir) else { return [] }
        while let name = e.nextObject() as? String {
            let last = (name as NSString).lastPathComponent
            if last.hasPrefix(".") || name == "manifest.json" || name == "stage.json" { continue }
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: dir + "/" + name, isDirectory: &isDirectory)
            if isDirectory.boolValue { continue }
            let size = ((try? FileManager.default.attributesOfItem(atPath: dir + "/" + name))?[.size] as? NSNumber)?.intValue ?? 0
            out.append(OutputFile(name: name, bytes: size))
        }
        return out.sorted { $0.name < $1.name }
    }

    static func outputsPresent(_ manifest: StageManifest, in dir: String) -> Bool {
        manifest.outputs.allSatisfy { o in
            ((try? FileManager.default.attributesOfItem(atPath: dir + "/" + o.name))?[.size] as? NSNumber)?.intValue == o.bytes
        }
    }

    // MARK: models

    func progress(_ label: String, total: Int, unit: String) -> ProgressBar {
        ProgressBar(label, total: total, unit: unit, enabled: showProgress)
    }

    /// The current model, loaded from `modelPath` when it is not in memory.
    func currentModel() throws -> LoadedModel {
        if let current { return current }
        let m = try ModelLoader.load(path: modelPath)
        current = m
        currentPath = modelPath
        return m
    }

    /// A fresh copy of the model at `modelPath` (the one in memory may carry gradients or adapters).
    func freshModel() throws -> LoadedModel {
        current = nil
        return try currentModel()
    }

    func tokens(_ path: String, _ tokenizer: any Tokenizer) throws -> [Int32] {
        if let t = tokenCache[path] { return t }
        // A perplexity dataset's file is read the way its loader reads it (PTB: lines joined).
        let t = try TokenizedText.read(path, data: recipe.data, tokenizer: tokenizer).tokens
        tokenCache[path] = t
        return t
    }

    /// Takes on the effect of a stage that finished earlier.
    func adopt(_ kind: StageKind, dir: String) throws { kind.implementation.adopt(self, dir: dir) }

    /// A stage's saved model becomes the latest (and, after prune or sparsify, the pruned one).
    func adoptModel(_ path: String, pruned: Bool) {
        modelPath = path
        if pruned { prunedPath = path }
        current = nil
    }

    struct Outcome {
        var status: StageStatus
        var summary: StageSummary
    }

    func runStage(_ kind: StageKind, dir: String, continuing: Bool) throws -> Outcome {
        try kind.implementation.run(self, dir: dir, continuing: continuing)
    }

    // MARK: outputs of the run

    /// `DIR/model/`: the run's final model (hard links to the last saved checkpoint's files).
    func publishModel() throws {
        guard modelPath != recipe.model, Checkpoint.isCheckpoint(modelPath) else { return }
        let fm = FileManager.default
        let dest = directory + "/model", tmp = directory + "/.model.tmp-\(getpid())"
        try? fm.removeItem(atPath: tmp)
        try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        for name in try fm.contentsOfDirectory(atPath: modelPath) where !name.hasPrefix(".") {
            do { try fm.linkItem(atPath: modelPath + "/" + name, toPath: tmp + "/" + name) } catch {
                try fm.copyItem(atPath: modelPath + "/" + name, toPath: tmp + "/" + name)
            }
        }
        let old = directory + "/.model.old-\(getpid())"
        if fm.fileExists(atPath: dest) { try fm.moveItem(atPath: dest, toPath: old) }
        try fm.moveItem(atPath: tmp, toPath: dest)
        try AtomicFile.syncDirectory(directory)
        try? fm.removeItem(atPath: old)
        if adaptersPath != nil {
            log("note: the adapters in \(adaptersPath!) are not merged into \(dest) (add a `merge` stage, or pass --adapters)")
        }
    }

    /// `results.json`: every metric of the final model, per-model metrics and the stages.
    func writeResults() throws -> RunResults {
        var metrics: Metrics = [:]
        var models: [String: ModelEvaluation] = [:]
        if let e = recipe.evaluate, recipe.stages.contains(.evaluate),
            let evaluation = try Self.read(EvaluationFile.self, from: stageDirectory(.evaluate) + "/evaluation.json")
        {
            models = evaluation.models
            for label in ["final", "pruned", "base"] where e.models.contains(label) {
                if let m = evaluation.models[label]?.metrics { metrics = m; break }
            }
        }
        if metrics["params"] == nil,
            let s = records.last(where: { ["merge", "prune", "sparsify", "load"].contains($0.stage) })?.summary.fields,
            let p = s.params ?? s.paramsAfter
        {
            metrics["params"] = Double(p)
        }
        let results = RunResults(
            recipe: recipe.name, recipeFile: recipe.file, model: recipe.model,
            finalModel: FileManager.default.fileExists(atPath: directory + "/model") ? directory + "/model" : modelPath,
            metrics: metrics, models: models, stages: records, finished: Self.timestamp())
        try Self.write(results, to: directory + "/results.json")
        return results
    }
}
