import ArgumentParser
import Foundation
import TopiaryCore
import TopiaryPipeline
import TopiaryPrune

extension StageKind: ExpressibleByArgument {}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a recipe (YAML) from model to report: prune and/or sparsify, recover with LoRA, evaluate.",
        discussion: """
            The recipe is checked completely before any work starts; a mistake is reported with its file, line and column.
            Stages run in this order when the recipe has them: load, graph, importance, prune, sparsify, sweep, finetune, \
            merge, evaluate. Each writes into OUT/NN-stage/ and, last, a manifest.json with the key of its inputs; running \
            the same recipe again skips finished stages whose inputs did not change and continues an interrupted finetune \
            from its checkpoint (or an interrupted evaluate/sweep from its finished items).
            Outputs: OUT/model/ (the final model; loads with --model), OUT/results.json, OUT/report.md, OUT/report.html.

            Example: topiary run recipes/quickstart.yaml   (writes checkpoints/quickstart/)
            """)

    @Argument(help: ArgumentHelp("The recipe file (see recipes/).", valueName: "recipe.yaml")) var recipe: String
    @Option(help: ArgumentHelp("Output folder (default: checkpoints/<recipe name>).", valueName: "dir")) var out: String?
    @Flag(help: "Run every stage again, even finished ones.") var force = false
    @Option(help: ArgumentHelp("Run this stage and every later one again.", valueName: "stage")) var from: StageKind?
    @Option(help: ArgumentHelp("Data folder (overrides the recipe's `data`).", valueName: "dir")) var data: String?
    @Option(help: ArgumentHelp("Model (overrides the recipe's `model`).", valueName: "path")) var model: String?
    @Option(help: ArgumentHelp("OpenBLAS threads (default: the recipe's `threads`, else all cores).", valueName: "n")) var threads: Int?
    @Flag(help: "Only check the recipe and list its stages.") var check = false
    @Flag(help: "No progress bars.") var quiet = false
    @OptionGroup var sharding: ShardArguments

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    func run() throws {
        try reportingErrors {
            var r = try Recipe.load(path: recipe, dataOverride: data, modelOverride: model)
            let shard = try sharding.resolved()
            if shard != nil || sharding.noCompute {
                guard var sweep = r.sweep else {
                    throw CLIError("\(recipe): --shard and --no-compute split a sweep stage's cells; this recipe has none")
                }
                sweep.shard = shard
                sweep.noCompute = sharding.noCompute
                r.sweep = sweep
            }
            let dir = out ?? "checkpoints/" + r.name
            if check {
                print("\(recipe): valid recipe `\(r.name)`; stages: \(r.stages.map(\.rawValue).joined(separator: " → ")); output: \(dir)")
                return
            }
            if let threads { setBLASThreads(threads) }
            try OutputLocation.checkWritable(dir, as: .directory)
            let pipeline = Pipeline(recipe: r, directory: dir)
            pipeline.force = force
            pipeline.from = from
            pipeline.showProgress = !quiet
            let results = try pipeline.run()
            if r.sweep?.shard != nil { return }  // the assembling run writes the results and the report
            if !results.metrics.isEmpty {
                print(
                    results.metrics.sorted { $0.key < $1.key }.map { k, v in
                        "\(k) = " + (k.hasSuffix("params") ? "\(Int(v))" : String(format: "%.4f", v))
                    }.joined(separator: "\n"))
            }
            print("report: \(dir)/report.html")
        }
    }
}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write report.md and report.html again from a finished run's folder.")

    @Argument(help: ArgumentHelp("The run's output folder.", valueName: "dir")) var directory: String

    func run() throws {
        try reportingErrors {
            try Report(directory: directory).write()
            print("\(directory)/report.html, \(directory)/report.md")
        }
    }
}

struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Perplexity of pruning methods at many levels: a methods × levels table, a plot and completions.",
        discussion: """
            Each cell prunes a fresh copy of the model with one method at one level (uniform per layer) and measures WikiText-2 \
            perplexity; it also records the greedy completion of "University is". Methods: the sparsify methods (level = \
            fraction of the linear weights set to zero) and structured-<criterion> for the prune criteria (l1, l2, random, \
            taylor, taylor-vector, taylor2, obs, variational-dropout) and structured-kmeans (level = fraction of the \
            non-embedding parameters removed from every layer; a level that would empty a group is "not applicable"). \
            Scores that do not depend on the level are computed once per sweep. Finished cells are kept in OUT, so an \
            interrupted sweep continues where it stopped. Outputs: OUT/01-load, OUT/02-sweep/sweep.{json,csv,md,svg}, \
            OUT/report.html.

            Example: topiary sweep --methods wanda,sparsegpt,magnitude,movement \
            --levels 0.01,0.05,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,0.99 --out checkpoints/sweep
            """)

    @OptionGroup var modelArguments: ModelArguments
    @OptionGroup var dataArguments: DataArguments
    @Option(help: ArgumentHelp("Output folder.", valueName: "dir")) var out: String
    @Option(help: ArgumentHelp("Comma-separated methods (default: magnitude,neg-magnitude,wanda,sparsegpt).", valueName: "list"))
    var methods: String?
    @Option(help: ArgumentHelp("Comma-separated levels in [0, 1) (default: 0.01,0.05,0.1,0.2,…,0.9,0.95,0.99).", valueName: "list"))
    var levels: String?
    @Option(help: ArgumentHelp("Comma-separated perplexity datasets (default: wikitext2).", valueName: "list")) var datasets: String?
    @Option(help: "Tokens per perplexity window.") var window: Int = SweepConfig().perplexity.window
    @Option(help: "Perplexity windows per cell.") var windows: Int = SweepConfig().perplexity.windows
    @OptionGroup var calibration: CalibrationArguments
    @Option(help: "Seed (random methods, adapters' initialisation).") var seed: UInt64 = SweepConfig().seed
    @OptionGroup var sharding: ShardArguments
    @Option(
        help: ArgumentHelp(
            "An earlier sweep's output folder: its finished cells are taken over when the model, data, calibration, perplexity settings "
                + "and seed are the same (e.g. to add methods or levels).",
            valueName: "dir"))
    var reuse: String?
    @Flag(help: "No progress bars.") var quiet = false

    /// The request the options describe (a recipe's sweep stage decodes the same one).
    func request() throws -> SweepConfig {
        var c = SweepConfig()
        if let methods {
            c.methods = try methods.split(separator: ",").map { m -> SweepMethod in
                let name = m.trimmingCharacters(in: .whitespaces)
                guard let v = SweepMethod(rawValue: name) else {
                    throw ValidationError("--methods: unknown method `\(name)` (known: \(SweepMethod.allNames.joined(separator: ", ")))")
                }
                return v
            }
        }
        if let levels {
            c.levels = try levels.split(separator: ",").map { l -> Double in
                guard let v = Double(l.trimmingCharacters(in: .whitespaces)) else {
                    throw ValidationError("--levels: `\(l)` is not a number")
                }
                return v
            }
        }
        if let datasets { c.perplexity.datasets = datasets.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        c.perplexity.window = window
        c.perplexity.windows = windows
        c.calibration = calibration.config(c.calibration)
        c.seed = seed
        return c
    }

    func validate() throws {
        let c = try request()
        try usage(.sweep) { try c.validate() }
    }

    func run() throws {
        try reportingErrors {
            var c = try request()
            c.reuse = reuse
            c.shard = try sharding.resolved()
            c.noCompute = sharding.noCompute
            try OutputLocation.checkWritable(out, as: .directory)
            if DefaultLocations.isMissingDefault(modelArguments.model) { throw CLIError(DefaultLocations.missingModelMessage) }
            let r = try Recipe.sweep(model: modelArguments.model, data: dataArguments.data, config: c, name: "sweep")
            let pipeline = Pipeline(recipe: r, directory: out)
            pipeline.showProgress = !quiet
            try pipeline.run()
            let dir = pipeline.stageDirectory(.sweep)
            if c.shard != nil { return }  // the assembling run writes the table
            print(try String(contentsOfFile: dir + "/sweep.md", encoding: .utf8))
            print("table, plot and completions: \(dir)/sweep.{md,csv,svg,json}; report: \(out)/report.html")
        }
    }
}
