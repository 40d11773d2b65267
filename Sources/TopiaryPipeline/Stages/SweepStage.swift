import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import TopiaryRecover
import TopiaryTokenizers

/// Perplexity of pruning methods at many levels: a methods × levels table, a plot and completions.
struct SweepStage: PipelineStage {
    static let name = "sweep"
    static func note(_ summary: StageSummary) -> String { "\(PipelineStages.number(summary.fields.cells)) cells" }

    static func read(_ s: inout MappingReader, _ context: RecipeContext) throws -> any StageConfiguration {
        var c = SweepConfig()
        if let m = try s.stringList("methods", allowed: SweepMethod.allNames) { c.methods = m.map { SweepMethod(rawValue: $0)! } }
        c.levels = try s.doubleList("levels") ?? c.levels
        c.perplexity = try context.perplexity(&s, c.perplexity) ?? c.perplexity
        c.calibration = try context.calibration(&s, c.calibration)
        c.seed = UInt64(try s.int("seed", range: 0...Int.max) ?? Int(context.seed))
        try context.validated(name) { try c.validate() }
        return c
    }

    static func inputFiles(_ recipe: Recipe) -> [String] {
        guard let s = recipe.sweep else { return [] }
        var files = s.perplexity.datasets.map(recipe.datasetPath)
        if s.methods.contains(where: \.needsCalibration) { files.append(s.calibration.file ?? recipe.datasetPath("wikitext2")) }
        return files
    }

    static func run(_ pipeline: Pipeline, dir: String, continuing: Bool) throws -> Pipeline.Outcome {
        try pipeline.runSweep(dir: dir, continuing: continuing)
    }
}

extension Pipeline {
    func runSweep(dir: String, continuing: Bool) throws -> Outcome {
        let c = recipe.sweep!
        var resumed = false
        var points: [SweepPoint] = []
        let cells = c.methods.flatMap { m in c.levels.map { (m, $0) } }
        let bar = progress(
            c.shard.map { "sweep (shard \($0))" } ?? "sweep", total: cells.indices.filter { c.shard?.owns($0) ?? true }.count, unit: "cells"
        )
        let prompt = "University is"
        var levelFreeScores: [String: [Int: [Double]]] = [:]
        // The dense model's gradients (movement, gradient, taylor) or Fisher (ewc, fisher-obs) on the calibration:
        // the same at every level, so computed once per kind.
        var denseStatistics: [String: [String: Tensor]] = [:]
        let reuse = try c.reuse.map { try reusableSweep($0, config: c) }
        var missing: [String] = []
        var computed = 0
        for (position, (method, level)) in cells.enumerated() {
            let name = String(format: "cell-%@-%.4f.json", method.rawValue, level)
            let file = dir + "/" + name
            // A cell finished by this attempt, or by the sweep given to --reuse (copied in, so this one is complete).
            if let done = (continuing ? Self.readIfIntact(SweepPoint.self, from: file) : nil)
                ?? reuse.flatMap({ Self.readIfIntact(SweepPoint.self, from: $0 + "/" + name) })
            {
                if !FileManager.default.fileExists(atPath: file) { try Self.write(done, to: file) }
                points.append(done)
                resumed = true
                if c.shard?.owns(position) ?? true { bar.advance() }
                continue
            }
            if let shard = c.shard, !shard.owns(position) { continue }  // another shard's cell
            if c.noCompute {
                missing.append(String(format: "%@ %.4g", method.rawValue, level))
                continue
            }
            computed += 1
            let m = try freshModel()
            let model = m.model
            var point = SweepPoint(method: method.rawValue, level: level)
            let set = method.needsCalibration ? try calibrationSet(c.calibration, tokenizer: m.tokenizer) : nil
            let t0 = Date()
            do {
                switch method.kind {
                case let .sparsify(sm):
                    if sm.needs.contains(.biases) && !model.config.attentionBias {
                        point.notApplicable = "the model has no biases"
                    } else {
                        var request = SparsifyConfig()
                        request.method = sm
                        request.sparsity = level
                        request.seed = c.seed
                        var sparsifier = try request.sparsifier()
                        if sm.needsGradients, let set {
                            let kind = sm.needsFisher ? "fisher" : "gradients"
                            if denseStatistics[kind] == nil {
                                denseStatistics[kind] = try sparsifier.denseStatistics(model: model, calibration: set)
                            }
                            sparsifier.precomputed = denseStatistics[kind]
                        }
                        point.achievedSparsity = try sparsifier.run(model: model, calibration: set, progress: nil)
                    }
                case .structured, .kmeans:
                    point.removedFraction = try pruneStructured(
                        method, level: level, model: model, calibration: set, seed: c.seed,
                        cache: &levelFreeScores)
                }
            } catch let e as PruneError {
                // A level the method cannot reach (it would empty a group) or a method the model cannot take.
                switch e {
                case .wouldEmptyGroup, .notApplicable: point.notApplicable = e.localizedDescription
                default: throw e
                }
            }
            if point.notApplicable == nil {
                point.sparsifySeconds = Date().timeIntervalSince(t0)
                for d in c.perplexity.datasets {
                    let r = try PerplexityEvaluator(window: c.perplexity.window, maxWindows: c.perplexity.windows)
                        .evaluate(model, tokens: try tokens(recipe.datasetPath(d), m.tokenizer), source: recipe.datasetPath(d))
                    point.perplexity[d] = r.ppl.isFinite ? r.ppl : Double.greatestFiniteMagnitude
                }
                let ids = try Generator(model: model, endOfSequence: m.tokenizer.eosTokenID)
                    .generate(
                        prompt: m.tokenizer.encode(prompt, addSpecialTokens: true, parseSpecial: true).map(Int32.init),
                        options: GenerationOptions(maxTokens: 16))
                point.generation = prompt + m.tokenizer.decode(ids.map(Int.init), skipSpecialTokens: true)
            }
            try Self.write(point, to: file)
            points.append(point)
            bar.advance(
                status: String(
                    format: "%@ %.2f: %@", method.rawValue, level,
                    point.perplexity[c.perplexity.datasets.first ?? "wikitext2"].map { String(format: "ppl %.2f", $0) } ?? "n/a"))
        }
        bar.finish()
        current = nil
        if !missing.isEmpty {
            throw PipelineError(
                "\(missing.count) of \(cells.count) cells are not finished in \(dir) (--no-compute): "
                    + missing.prefix(20).joined(separator: ", ") + (missing.count > 20 ? ", …" : ""))
        }
        log("  \(computed) cells computed, \(points.count - computed) taken over from earlier attempts or shards")
        if c.shard != nil {
            var f = StageSummary.Fields()
            f.cells = computed
            return Outcome(status: .ran, summary: StageSummary(f))
        }
        let sweep = SweepFile(
            methods: c.methods.map(\.rawValue), levels: c.levels, datasets: c.perplexity.datasets,
            window: c.perplexity.window, windows: c.perplexity.windows, prompt: prompt, points: points)
        try Self.write(sweep, to: dir + "/sweep.json")
        try SweepTable(sweep: sweep).write(directory: dir)
        var f = StageSummary.Fields()
        f.cells = points.count
        return Outcome(status: resumed ? .resumed : .ran, summary: StageSummary(f))
    }

    /// The stage folder of an earlier sweep (`path` is its output folder or the stage folder itself) whose cells this
    /// sweep may take over: the same model and data files, calibration, perplexity settings and seed.
    func reusableSweep(_ path: String, config c: SweepConfig) throws -> String {
        let dir = FileManager.default.fileExists(atPath: path + "/02-sweep") ? path + "/02-sweep" : path
        guard let stage = Self.readIfIntact(StageMarker.self, from: dir + "/stage.json"), stage.stage == "sweep" else {
            throw PipelineError("--reuse \(path): not the output of a sweep (no 02-sweep/stage.json)")
        }
        // Without a manifest (an interrupted sweep) the settings cannot be checked: refuse rather than mix results.
        guard let manifest = Self.readManifest(dir) else {
            throw PipelineError("--reuse \(path): that sweep did not finish (no manifest to check its settings against)")
        }
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        for (key, value) in [
            ("calibration", try e.encode(c.calibration)), ("perplexity", try e.encode(c.perplexity)), ("seed", try e.encode(c.seed)),
        ] {
            guard let old = manifest.config[key], old == (try JSONDecoder().decode(JSONValue.self, from: value)) else {
                throw PipelineError("--reuse \(path): its \(key) settings differ from this sweep's; its cells would not be comparable")
            }
        }
        let mine = try inputFingerprints(.sweep)
        for (file, recorded) in manifest.inputs where mine[file] != nil {
            guard try Self.sameContent(recorded, file) else { throw PipelineError("--reuse \(path): \(file) has changed since that sweep") }
        }
        guard Set(manifest.inputs.keys) == Set(mine.keys) else {
            throw PipelineError(
                "--reuse \(path): it read other model or data files (\(manifest.inputs.keys.sorted().joined(separator: ", ")))")
        }
        return dir
    }

    /// One structured cell of a sweep: `level` of the non-embedding parameters removed from every layer by `method`.
    /// Scores that do not depend on the level (everything but obs) are computed once, on a fresh copy of the model, and
    /// kept in `cache`. Returns the fraction of non-embedding parameters removed.
    func pruneStructured(
        _ method: SweepMethod, level: Double, model: DecoderModel, calibration set: CalibrationSet?, seed: UInt64,
        cache: inout [String: [Int: [Double]]]
    ) throws -> Double {
        let graph = try DependencyGraphBuilder().build(model: model)
        let range = 0...(model.config.layerCount - 1)
        var execution = PruneExecution(pruner: StructuredPruner(ratio: level, layers: range))
        execution.seed = seed
        let before = model.parameterCount, nonEmbedding = before - model.config.vocabSize * model.config.hiddenSize
        let criterion: ImportanceCriterion
        switch method.kind {
        case let .structured(c): criterion = c
        case .kmeans:
            criterion = .taylor
            execution.merge = .kmeans
        case .sparsify: throw PipelineError("\(method.rawValue) is not a structured method")
        }
        var options = CriterionOptions()
        options.seed = seed
        options.vdSteps = 50
        options.vdWindows = 2
        var scoring = ImportanceScoring(criterion: criterion, aggregation: .sum, options: options)
        scoring.gradientWindowsPerBatch = 2
        if scoring.isSequential {
            execution.compensate = true  // obs moves the reading linear to its least-squares best, as `prune` does
            _ = try execution.run(model: model, graph: graph, estimator: nil, calibration: set)
        } else {
            if cache[criterion.rawValue] == nil {
                let scoringModel = try freshModel().model
                let ranked = StructuredPruner.rankedGroups(graph, layers: range)
                let prepared = try scoring.prepare(model: scoringModel, groups: ranked, calibration: set)
                cache[criterion.rawValue] = try ImportanceScoring.scores(prepared.estimator, groups: ranked, model: scoringModel)
            }
            _ = try execution.run(model: model, graph: graph, estimator: PrecomputedScores(cache[criterion.rawValue]!), calibration: set)
        }
        return Double(before - model.parameterCount) / Double(nonEmbedding)
    }
}
