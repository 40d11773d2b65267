import ArgumentParser
import Foundation
import TopiaryCore
import TopiaryEval
import TopiaryModels
import TopiaryPipeline

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Zero-shot accuracy on BoolQ, PIQA, HellaSwag, WinoGrande, ARC-e/c and OpenBookQA, scored as lm-evaluation-harness does.",
        discussion: """
            acc picks the choice with the highest summed log-likelihood of its continuation; acc_norm divides it by the \
            choice's length in characters. Task files are read from --data/zeroshot. HellaSwag comes from llama.cpp's derived \
            file, whose contexts do not capitalise ctx_b as lm-eval does (a small prompt difference). \
            With --out, items are scored in cells of 128 per task kept in OUT/cells: an interrupted evaluation continues, \
            and --shard I/N (e.g. the tasks of a Slurm array) computes every N-th cell; the same command without \
            --shard then assembles the same accuracies as one process.
            """)

    @OptionGroup var modelArguments: ModelArguments
    @OptionGroup var adapterArguments: AdapterArguments
    @OptionGroup var dataArguments: DataArguments
    @Option(help: "Comma-separated tasks.") var tasks: String = ZeroShotTasks.names.joined(separator: ",")
    @Option(help: "Only the first N items of each task.") var limit: Int?
    @Option(help: ArgumentHelp("Write results.json and results.md into this directory.", valueName: "dir")) var out: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var sharding: ShardArguments

    func validate() throws {
        if (try sharding.resolved() != nil || sharding.noCompute) && out == nil {
            throw ValidationError("--shard and --no-compute need --out: the folder every shard writes its cells into")
        }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        for t in tasks.split(separator: ",") where !ZeroShotTasks.names.contains(String(t)) {
            throw ValidationError("unknown task '\(t)' (known: \(ZeroShotTasks.names.joined(separator: ", ")))")
        }
    }

    struct Summary: Encodable {
        let model: String
        let limit: Int?
        let results: [String: TaskSummary]
        let average: Double
        let averageStderr: Double
        enum CodingKeys: String, CodingKey {
            case model, limit, results, average
            case averageStderr = "average_stderr"
        }
    }

    struct TaskSummary: Encodable {
        let acc: Double, accStderr: Double, accNorm: Double?, accNormStderr: Double?, n: Int, seconds: Double
        enum CodingKeys: String, CodingKey {
            case acc, n, seconds
            case accStderr = "acc_stderr"
            case accNorm = "acc_norm"
            case accNormStderr = "acc_norm_stderr"
        }
    }

    func run() throws {
        try reportingErrors {
            let names = tasks.split(separator: ",").map(String.init)
            let selected = try names.map { try ZeroShotTasks.task(named: $0) }
            let dir = dataArguments.data + "/zeroshot"
            // Read every task file first: a bad file fails before any work.
            for t in selected { _ = try t.items(from: dir + "/" + t.fileName, limit: limit) }
            if let out { try OutputLocation.checkWritable(out, as: .directory) }
            let loaded = try modelArguments.load(adapters: adapterArguments.adapters)
            var results: [ZeroShotEvaluator.TaskResult] = []
            if let out {
                // Cells of 128 items in OUT/cells: shards of a batch job compute them, this run (or a resumed one) gathers.
                var sharded = ShardedEvaluation(tasks: selected, dataDirectory: dir, limit: limit, directory: out)
                sharded.shard = try sharding.resolved()
                sharded.noCompute = sharding.noCompute
                guard let r = try sharded.run(loaded, adapters: adapterArguments.adapters) else { return }
                results = r
            } else {
                let evaluator = ZeroShotEvaluator(model: loaded.model, tokenizer: loaded.tokenizer)
                for t in selected {
                    let n = try t.items(from: dir + "/" + t.fileName, limit: limit).count
                    results.append(
                        try evaluator.evaluate(t, dataDirectory: dir, limit: limit, progress: ProgressBar(t.name, total: n, unit: "items")))
                }
            }
            // The papers' average: acc_norm where reported (ARC, HellaSwag, OBQA, PIQA), acc otherwise.
            let (average, averageStderr) = ZeroShotEvaluator.average(results)
            let summary = Summary(
                model: loaded.source, limit: limit,
                results: Dictionary(
                    uniqueKeysWithValues: results.map {
                        (
                            $0.task,
                            TaskSummary(
                                acc: $0.acc, accStderr: $0.accStderr, accNorm: $0.accNorm, accNormStderr: $0.accNormStderr, n: $0.n,
                                seconds: $0.seconds)
                        )
                    }), average: average, averageStderr: averageStderr)
            var md = "| model | " + results.map(\.task).joined(separator: " | ") + " | average |\n"
            md += "|---|" + results.map { _ in "---:|" }.joined() + "---:|\n"
            md +=
                "| \((loaded.source as NSString).lastPathComponent) | "
                + results.map { r in String(format: "%.2f ± %.2f", 100 * r.headline, 100 * r.headlineStderr) }.joined(separator: " | ")
                + String(format: " | %.2f ± %.2f |\n", 100 * average, 100 * averageStderr)
            md += "\nacc (± stderr) / acc_norm per task, n items:\n\n"
            for r in results {
                md += String(
                    format: "- %@: acc %.4f ± %.4f%@, n = %d, %.0f s\n", r.task, r.acc, r.accStderr,
                    r.accNorm.map { String(format: ", acc_norm %.4f ± %.4f", $0, r.accNormStderr ?? 0) } ?? "", r.n, r.seconds)
            }
            md +=
                "\nThe average uses acc_norm where lm-eval reports it (PIQA, HellaSwag, ARC, OpenBookQA) and acc otherwise. HellaSwag "
                + "prompts come from llama.cpp's derived file: `ctx_b` is not capitalised as in lm-eval.\n"
            if let out {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try AtomicFile.write(try encoder.encode(results), to: out + "/results-per-item.json")
                try AtomicFile.write(try encoder.encode(summary), to: out + "/results.json")
                try AtomicFile.write(md, to: out + "/results.md")
            }
            if json {
                try printJSON(summary)
            } else {
                print(md)
            }
        }
    }
}
