import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import TopiaryRecover
import TopiaryTokenizers

/// Perplexity, zero-shot tasks and generations of the base, pruned and final models.
struct EvaluateStage: PipelineStage {
    static let name = "evaluate"
    static func note(_ summary: StageSummary) -> String {
        EvaluateConfig.modelLabels.compactMap { l in
            guard let m = summary.models[l] else { return nil }
            let ppl = m["wikitext2_ppl"].map { String(format: "ppl %.2f", $0) }
            let avg = m["average_acc"].map { String(format: "avg %.2f%%", 100 * $0) }
            return "\(l): " + [ppl, avg].compactMap { $0 }.joined(separator: ", ")
        }.joined(separator: "; ")
    }

    static func read(_ s: inout MappingReader, _ context: RecipeContext) throws -> any StageConfiguration {
        var c = EvaluateConfig()
        c.models = try s.stringList("models", allowed: EvaluateConfig.modelLabels) ?? c.models
        c.perplexity = try context.perplexity(&s, PerplexityConfig())
        let taskNames = ZeroShotTasks.names
        if let t = try s.stringList("tasks", allowed: taskNames + ["all"]) { c.tasks = t.contains("all") ? taskNames : t }
        c.limit = try s.int("limit")
        if var g = try s.mapping("generation") {
            c.generation.prompts = try g.stringList("prompts") ?? c.generation.prompts
            c.generation.maxTokens = try g.int("max_tokens") ?? c.generation.maxTokens
            try g.finish()
        }
        // `speed: true` measures with the defaults; a mapping sets repeats, prompt and decode.
        if let v = s.value("speed") {
            if case .scalar = v {
                c.speed = try s.bool("speed") == true ? SpeedConfig() : nil
            } else if var m = try s.mapping("speed") {
                var speed = SpeedConfig()
                speed.repeats = try m.int("repeats") ?? speed.repeats
                speed.prompt = try m.int("prompt") ?? speed.prompt
                speed.decode = try m.int("decode") ?? speed.decode
                try m.finish()
                c.speed = speed
            }
        }
        try context.validated(name) { try c.validate() }
        return c
    }

    static func inputFiles(_ recipe: Recipe) -> [String] {
        guard let e = recipe.evaluate else { return [] }
        return (e.perplexity?.datasets ?? []).map(recipe.datasetPath)
            + e.tasks.compactMap { try? ZeroShotTaskFile.path(task: $0, data: recipe.data) }
    }

    static func run(_ pipeline: Pipeline, dir: String, continuing: Bool) throws -> Pipeline.Outcome {
        try pipeline.runEvaluate(dir: dir, continuing: continuing)
    }
}

extension Pipeline {
    static let hellaswagNote = "HellaSwag is scored from llama.cpp's derived file, whose contexts do not capitalise ctx_b as lm-eval does."

    func runEvaluate(dir: String, continuing: Bool) throws -> Outcome {
        let c = recipe.evaluate!
        // The models to evaluate, by label: path and adapters.
        var targets: [(label: String, path: String, adapters: String?)] = []
        let finalIsBase = modelPath == recipe.model && adaptersPath == nil
        let finalIsPruned = modelPath == prunedPath && adaptersPath == nil
        for label in c.models {
            switch label {
            case "base": targets.append(("base", recipe.model, nil))
            case "pruned": if let prunedPath { targets.append(("pruned", prunedPath, nil)) }
            default:
                // Not evaluated twice when it is the same model as another label.
                if !(finalIsBase && c.models.contains("base")) && !(finalIsPruned && c.models.contains("pruned")) {
                    targets.append(("final", modelPath, adaptersPath))
                }
            }
        }
        var models: [String: ModelEvaluation] = [:]
        var resumed = false
        // Perplexity and generations of every model first (minutes), then the zero-shot tasks (much longer); each
        // part of each model is kept in its own file, so an interrupted evaluation continues where it stopped.
        for part in c.tasks.isEmpty ? ["quick"] : ["quick", "tasks"] {
            for t in targets {
                let file = dir + "/eval-\(t.label)-\(part).json"
                let what = part == "quick" ? "perplexity, generations" : "zero-shot tasks"
                let result: ModelEvaluation
                if continuing, let done = Self.readIfIntact(ModelEvaluation.self, from: file) {
                    result = done
                    resumed = true
                    log("  \(t.label) (\(what)): evaluated earlier, kept")
                } else {
                    log("  evaluating \(t.label) (\(what)): \(t.path)\(t.adapters.map { " + adapters \($0)" } ?? "")")
                    result = try evaluateModel(path: t.path, adapters: t.adapters, config: c, label: t.label, tasks: part == "tasks")
                    try Self.write(result, to: file)
                }
                models[t.label] = models[t.label].map { $0.merged(with: result) } ?? result
            }
        }
        if let speed = c.speed {
            let file = dir + "/eval-speed.json"
            let measured: [String: Metrics]
            if continuing, let done = Self.readIfIntact([String: Metrics].self, from: file) {
                measured = done
                log("  speed: measured earlier, kept")
            } else {
                measured = try measureSpeed(targets, speed)
                try Self.write(measured, to: file)
            }
            for (label, m) in measured { models[label]?.metrics.merge(m) { _, new in new } }
        }
        // `final` equals `pruned` when nothing changed the model after pruning.
        if c.models.contains("final"), models["final"] == nil {
            models["final"] = finalIsPruned ? models["pruned"] : finalIsBase ? models["base"] : nil
        }
        try Self.write(EvaluationFile(models: models, hellaswagNote: Self.hellaswagNote), to: dir + "/evaluation.json")
        current = nil
        return Outcome(status: resumed ? .resumed : .ran, summary: StageSummary(models: models.mapValues(\.metrics)))
    }

    /// Perplexity and generations (`tasks` false) or the zero-shot tasks (`tasks` true) of one model.
    func evaluateModel(
        path: String, adapters: String?, config c: EvaluateConfig, label: String, tasks runTasks: Bool
    ) throws -> ModelEvaluation {
        let m = try ModelLoader.load(path: path)
        if let adapters { try LoRATrainer.loadAdapters(directory: adapters, into: m.model) }
        var metrics: Metrics = ["params": Double(m.model.parameterCount)]
        var details = ModelEvaluation.Details()
        if !runTasks, let p = c.perplexity {
            for d in p.datasets {
                let path = recipe.datasetPath(d)
                let r = try PerplexityEvaluator(window: p.window, maxWindows: p.windows)
                    .evaluate(
                        m.model, tokens: try tokens(path, m.tokenizer), source: path,
                        progress: progress("\(label) \(d) perplexity", total: p.windows, unit: "windows"))
                metrics[d.replacingOccurrences(of: "-", with: "_") + "_ppl"] = r.ppl
                details.perplexity[d] = .init(
                    ppl: r.ppl, windows: r.windows, window: r.window, predictions: r.predictions, seconds: r.seconds)
                log(String(format: "  %@ %@ perplexity: %.4f (%d × %d)", label, d, r.ppl, r.windows, r.window))
            }
        }
        if runTasks && !c.tasks.isEmpty {
            let evaluator = ZeroShotEvaluator(model: m.model, tokenizer: m.tokenizer)
            let zdir = recipe.data + "/zeroshot"
            var results: [ZeroShotEvaluator.TaskResult] = []
            var tasks: [String: ModelEvaluation.TaskDetail] = [:]
            for name in c.tasks {
                let task = try ZeroShotTasks.task(named: name)
                let n = try task.items(from: zdir + "/" + task.fileName, limit: c.limit).count
                let r = try evaluator.evaluate(
                    task, dataDirectory: zdir, limit: c.limit, progress: progress("\(label) \(name)", total: n, unit: "items"))
                metrics[name + "_acc"] = r.acc
                metrics[name + "_acc_stderr"] = r.accStderr
                if let an = r.accNorm {
                    metrics[name + "_acc_norm"] = an
                    metrics[name + "_acc_norm_stderr"] = r.accNormStderr ?? 0
                }
                results.append(r)
                tasks[name] = .init(
                    acc: r.acc, accStderr: r.accStderr, accNorm: r.accNorm, accNormStderr: r.accNorm.map { _ in r.accNormStderr ?? 0 },
                    n: r.n, seconds: r.seconds)
            }
            let average = ZeroShotEvaluator.average(results)
            metrics["average_acc"] = average.mean
            metrics["average_acc_stderr"] = average.stderr
            details.tasks = tasks
            details.tasksRan = true
            details.limit = c.limit
        }
        if !runTasks && !c.generation.prompts.isEmpty {
            var gens: [ModelEvaluation.Generation] = []
            let g = Generator(model: m.model, endOfSequence: m.tokenizer.eosTokenID)
            for prompt in c.generation.prompts {
                let ids = try g.generate(
                    prompt: m.tokenizer.encode(prompt, addSpecialTokens: true, parseSpecial: true).map(Int32.init),
                    options: GenerationOptions(maxTokens: c.generation.maxTokens))
                gens.append(.init(prompt: prompt, completion: m.tokenizer.decode(ids.map(Int.init), skipSpecialTokens: true)))
            }
            details.generations = gens
        }
        return ModelEvaluation(label: label, path: path, adapters: adapters, metrics: metrics, details: details)
    }
}
