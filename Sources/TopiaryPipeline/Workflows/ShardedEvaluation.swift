import Foundation
import TopiaryCore
import TopiaryEval
import TopiaryModels

/// A zero-shot evaluation split into cells — ``cellItems`` consecutive items of one task — that shards of a batch job
/// compute into a shared folder (`OUT/cells/`), and that the run without a shard assembles into the same accuracies
/// and standard errors as one process. A cell starts at a multiple of the evaluator's chunk, so its items are batched
/// exactly as in a whole-task run. Each cell records the key of what it was computed from (model file, adapters,
/// task file, item range); a cell with another key is never used.
public struct ShardedEvaluation {
    public static let cellItems = 4 * ZeroShotEvaluator.chunkItems

    public let tasks: [any EvaluationTask]
    public let dataDirectory: String
    public let limit: Int?
    public let directory: String
    public var shard: Shard?
    public var noCompute = false
    public var output = WorkflowOutput.terminal

    public init(tasks: [any EvaluationTask], dataDirectory: String, limit: Int?, directory: String) {
        self.tasks = tasks
        self.dataDirectory = dataDirectory
        self.limit = limit
        self.directory = directory
    }

    struct Cell: Codable {
        var key: String
        var task: String
        var start: Int
        var count: Int
        var seconds: Double
        var scores: ZeroShotEvaluator.ItemScores
    }

    /// What a cell's scores depend on: the model (its path and content fingerprint), the adapters, the task file's
    /// content and the item range.
    static func key(model: String, adapters: String?, taskFile: String, start: Int, count: Int) throws -> String {
        let parts = [
            model, try Pipeline.fingerprint(model), adapters ?? "-",
            try adapters.map { try Pipeline.fingerprint($0 + "/adapter_model.safetensors") } ?? "-",
            try Pipeline.fingerprint(taskFile), "\(start)+\(count)",
        ]
        return Pipeline.hashString(parts.joined(separator: "|"))
    }

    /// The accuracies of every task (nil for a shard, which only computes its cells).
    public func run(_ loaded: LoadedModel, adapters: String?) throws -> [ZeroShotEvaluator.TaskResult]? {
        let cells = directory + "/cells"
        try FileManager.default.createDirectory(atPath: cells, withIntermediateDirectories: true)
        let evaluator = ZeroShotEvaluator(model: loaded.model, tokenizer: loaded.tokenizer)
        var results: [ZeroShotEvaluator.TaskResult] = []
        var position = 0, computed = 0, taken = 0
        var missing: [String] = []
        for task in tasks {
            let file = dataDirectory + "/" + task.fileName
            let items = try task.items(from: file, limit: limit)
            var scores = ZeroShotEvaluator.ItemScores()
            var seconds = 0.0
            for start in stride(from: 0, to: items.count, by: Self.cellItems) {
                defer { position += 1 }
                let part = Array(items[start..<min(items.count, start + Self.cellItems)])
                let key = try Self.key(model: loaded.source, adapters: adapters, taskFile: file, start: start, count: part.count)
                let path = cells + "/\(task.name)-\(start).json"
                if let done = Pipeline.readIfIntact(Cell.self, from: path), done.key == key {
                    scores.append(done.scores)
                    seconds += done.seconds
                    taken += 1
                    continue
                }
                if let shard, !shard.owns(position) { continue }
                if noCompute {
                    missing.append("\(task.name) items \(start)…\(start + part.count - 1)")
                    continue
                }
                let t0 = Date()
                let s = try evaluator.score(
                    part, progress: output.progress("\(task.name) \(start)…\(start + part.count - 1)", total: part.count, unit: "items"))
                let cell = Cell(
                    key: key, task: task.name, start: start, count: part.count, seconds: Date().timeIntervalSince(t0), scores: s)
                try Pipeline.write(cell, to: path)
                scores.append(s)
                seconds += cell.seconds
                computed += 1
            }
            if shard == nil && missing.isEmpty {
                results.append(ZeroShotEvaluator.result(task: task, items: items, scores: scores, seconds: seconds))
            }
        }
        if !missing.isEmpty {
            throw PipelineError(
                "\(missing.count) cells are not finished in \(cells) (--no-compute): " + missing.prefix(20).joined(separator: ", ")
                    + (missing.count > 20 ? ", …" : ""))
        }
        output.log("\(computed) cells computed, \(taken) taken over from earlier attempts or shards")
        if let shard {
            output.log("shard \(shard): done; when every shard has finished, the same command without --shard assembles the results")
            return nil
        }
        return results
    }
}
