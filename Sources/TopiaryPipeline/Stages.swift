import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryEval
import TopiaryGraph
import TopiaryModels
import TopiaryTokenizers
import TopiaryPrune
import TopiaryRecover

/// Where a zero-shot task's file lives under a data folder.
enum ZeroShotTaskFile {
    static func path(task: String, data: String) throws -> String {
        data + "/zeroshot/" + (try ZeroShotTasks.task(named: task)).fileName
    }
}

/// Scores computed earlier (the importance stage's `importance.json`), by group id.
public struct PrecomputedImportance: ImportanceEstimator {
    public let scores: [Int: [Double]]
    public let source: String

    public func scores(for group: PruningGroup, parameters: [String: Parameter]) throws -> [Double] {
        guard let s = scores[group.id], s.count == group.units else {
            throw PipelineError("\(source) has no scores for group \(group.id) (\(group.kind), layer \(group.layer.map(String.init) ?? "-"), \(group.units) units): it was computed for another model")
        }
        return s
    }

    public static func read(_ path: String) throws -> PrecomputedImportance {
        guard let json = Pipeline.readJSON(path), let groups = json["groups"] as? [[String: Any]] else {
            throw PipelineError("\(path): missing or not an importance file")
        }
        var scores: [Int: [Double]] = [:]
        for g in groups {
            guard let id = g["id"] as? Int, let s = g["scores"] as? [Double] else { throw PipelineError("\(path): a group lacks id or scores") }
            scores[id] = s
        }
        return PrecomputedImportance(scores: scores, source: path)
    }
}

extension Pipeline {
    func encoderData<T: Encodable>(_ v: T) throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try e.encode(v)
    }

    func layerShapes(_ c: ModelConfig) -> [String: Any] {
        ["heads": c.heads, "kv_heads": c.kvHeads, "intermediate_sizes": c.intermediateSizes, "hidden_size": c.hiddenSize,
         "head_dim": c.headDim, "layers": c.layerCount]
    }

    func layerRange(_ text: String, layerCount: Int) throws -> ClosedRange<Int> {
        text == "all" ? 0...(layerCount - 1) : try StructuredPruner.parseLayers(text, layerCount: layerCount)
    }

    func calibrationSet(_ c: CalibrationConfig, tokenizer: any Tokenizer) throws -> CalibrationSet {
        let path = c.file ?? recipe.datasetPath("wikitext2")
        return try CalibrationSet(tokens: try tokens(path, tokenizer), windows: c.windows, length: c.length, offset: c.offset, source: path)
    }

    // MARK: load, graph

    func runLoad(dir: String) throws -> Outcome {
        modelPath = recipe.model
        let m = try freshModel()
        let c = m.model.config
        var summary: [String: Any] = ["model": recipe.model, "params": m.model.parameterCount,
                                      "non_embedding_params": m.model.parameterCount - c.vocabSize * c.hiddenSize]
        summary["config"] = layerShapes(c)
        try Self.writeJSON(summary, to: dir + "/model.json")
        return Outcome(status: .ran, summary: summary)
    }

    func runGraph(dir: String) throws -> Outcome {
        let m = try currentModel()
        let name = ((m.source as NSString).lastPathComponent as NSString).deletingPathExtension
        let graph = try DependencyGraphBuilder().build(model: m.model, name: name)
        try AtomicFile.write(try graph.jsonData(), to: dir + "/graph.json")
        try AtomicFile.write(graph.dot(), to: dir + "/graph.dot")
        var kinds: [String: Int] = [:]
        for g in graph.groups { kinds[g.kind, default: 0] += 1 }
        log("  \(graph.groups.count) coupled groups: " + kinds.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
        return Outcome(status: .ran, summary: ["groups": graph.groups.count, "kinds": kinds])
    }

    // MARK: importance, prune

    func runImportance(dir: String) throws -> Outcome {
        let c = recipe.importance!
        let m = try freshModel()
        let model = m.model
        if c.criterion.needsGradients && !c.criterion.needsFisher {
            // One backward over all windows follows: fault its memory in while the graph is traced and the text tokenized.
            BufferPool.shared.reserve(bytes: Calibration.stepBytes(model.config, windows: c.calibration.windows, length: c.calibration.length))
        }
        let graph = try DependencyGraphBuilder().build(model: model)
        let range = try layerRange(recipe.prune?.layers ?? "all", layerCount: model.config.layerCount)
        let ranked = StructuredPruner.rankedGroups(graph, layers: range)
        var fisher: [String: Tensor] = [:]
        var activations: [String: Tensor] = [:]
        var loss: Double?
        var calibration: [String: Any]?
        var learned: [Int: [Double]]?
        let set = c.criterion.needsCalibration ? try calibrationSet(c.calibration, tokenizer: m.tokenizer) : nil
        if let set {
            calibration = ["windows": set.windows, "length": set.length, "offset": set.offset, "file": c.calibration.file ?? recipe.datasetPath("wikitext2")]
        }
        if let set, c.criterion.isLearned {
            var vd = VariationalDropout()
            vd.seed = c.seed
            let result = try vd.run(model: model, groups: ranked, calibration: set,
                                    progress: progress("variational dropout", total: vd.steps, unit: "steps"))
            learned = result.scores
            loss = result.history.last?.loss
        }
        if let set, c.criterion.needsGradients {
            Calibration.restrictGradients(model, to: Calibration.parameterNames(of: ranked))
            if c.criterion.needsFisher {
                fisher = try Calibration.fisher(model, set, progress: progress("calibration (per window)", total: set.windows, unit: "windows"))
            } else {
                loss = try Calibration.accumulateGradients(model, set, progress: progress("calibration", total: set.windows, unit: "windows"))
            }
            if c.criterion.needsActivations {
                activations = try Calibration.inputEnergies(model, set, weights: Calibration.parameterNames(of: ranked))
            }
        }
        var criterion = CriterionEstimator(criterion: c.criterion, aggregation: c.aggregation, fisher: fisher, seed: c.seed)
        criterion.activations = activations
        let estimator: any ImportanceEstimator = learned.map(PrecomputedScores.init) ?? criterion
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0) })
        var groups: [[String: Any]] = []
        // obs scores units while the prune stage removes them, layer by layer: nothing to record ahead of it.
        for g in ranked where !c.criterion.isSequential {
            groups.append(["id": g.id, "kind": g.kind, "layer": g.layer ?? -1, "units": g.units,
                           "scores": try estimator.scores(for: g, parameters: params)])
        }
        var json: [String: Any] = ["criterion": c.criterion.rawValue, "aggregation": c.aggregation.rawValue, "layers": [range.lowerBound, range.upperBound],
                                   "groups": groups]
        if let calibration { json["calibration"] = calibration }
        if let loss { json["calibration_loss"] = loss }
        try Self.writeJSON(json, to: dir + "/importance.json")
        importancePath = dir + "/importance.json"
        current = nil  // gradients and frozen flags stay behind; the next stage loads a clean copy
        var summary: [String: Any] = ["criterion": c.criterion.rawValue, "groups": groups.count]
        if let loss { summary["calibration_loss"] = loss }
        return Outcome(status: .ran, summary: summary)
    }

    func runPrune(dir: String) throws -> Outcome {
        let c = recipe.prune!
        guard let importancePath else { throw PipelineError("the prune stage needs the importance stage's scores") }
        let impJSON = Self.readJSON(importancePath) ?? [:]
        let sequential = impJSON["criterion"] as? String == ImportanceCriterion.obs.rawValue
        let imp = sequential ? PrecomputedImportance(scores: [:], source: importancePath) : try PrecomputedImportance.read(importancePath)
        let surgeon = c.compensate ?? sequential
        let m = try freshModel()
        let model = m.model
        let range = try layerRange(c.layers, layerCount: model.config.layerCount)
        let graph = try DependencyGraphBuilder().build(model: model)
        let before = model.parameterCount
        let nonEmbedding = before - model.config.vocabSize * model.config.hiddenSize
        let beforeConfig = model.config
        var pruner = StructuredPruner(ratio: c.ratio, layers: range, mode: c.mode, roundTo: c.roundTo)
        var search: [String: Double]?
        if c.allocation == "search" {
            let llama = model
            let windows = c.searchWindows ?? 4, offset = c.searchOffset ?? 40960
            let path = recipe.datasetPath("wikitext2")
            let all = try tokens(path, m.tokenizer)
            guard offset + windows * 512 <= all.count else {
                throw PipelineError("\(path): search_windows \(windows) × 512 from token \(offset) run past its \(all.count) tokens")
            }
            let reward = Array(all[offset..<(offset + windows * 512)])
            let weights = Dictionary(uniqueKeysWithValues: llama.parameters.map { ($0.name, $0.value) })
            let evaluations = c.searchEvaluations ?? 40
            let result = try LayerRatioSearch(layers: Array(range), evaluations: evaluations, seed: recipe.seed)
                .run(progress: progress("layer-ratio search", total: evaluations, unit: "candidates")) { shares in
                    let copy = try DecoderModel(config: llama.config, weights: weights, source: "search candidate")
                    var candidate = pruner
                    candidate.layerShares = shares
                    try StructuredPruner.apply(try candidate.plan(model: copy, graph: graph, estimator: imp), graph: graph, to: copy)
                    return try PerplexityEvaluator(window: 512, maxWindows: windows).evaluate(copy, tokens: reward).ppl
                }
            pruner.layerShares = result.shares
            search = ["reward_ppl": result.fitness, "uniform_reward_ppl": result.uniformFitness, "evaluations": Double(result.history.count),
                      "offset": Double(offset), "windows": Double(windows)]
            log(String(format: "  layer-ratio search: reward ppl %.4f (uniform %.4f)", result.fitness, result.uniformFitness))
        }
        var removals: [GroupRemoval]
        if surgeon {
            guard let ic = recipe.importance else { throw PipelineError("criterion `obs` and `compensate` need the importance stage's calibration settings") }
            let llama = model
            var obs = StructuredOBS(pruner: pruner)
            obs.compensate = true
            if !sequential { obs.fixed = try pruner.plan(model: model, graph: graph, estimator: imp) }
            removals = try obs.run(model: llama, graph: graph, calibration: try calibrationSet(ic.calibration, tokenizer: m.tokenizer),
                                   progress: progress("obs prune + update", total: model.config.layerCount, unit: "layers"))
        } else {
            removals = try pruner.plan(model: model, graph: graph, estimator: imp)
            if c.merge == "kmeans" {
                let llama = model
                removals = try ChannelMerging.mergeMLP(removals, graph: graph, model: llama, seed: recipe.seed)
            }
            try StructuredPruner.apply(removals, graph: graph, to: model)
        }
        for p in model.parameters { p.zeroGrad() }
        var plan = PruningPlan(ratio: c.ratio, layers: Array(range), mode: c.mode.rawValue + (c.merge == "kmeans" ? "+kmeans-merge" : "") + (surgeon ? "+obs-update" : ""),
                               importance: impJSON["criterion"] as? String ?? "?",
                               aggregation: impJSON["aggregation"] as? String ?? "?",
                               calibration: (impJSON["calibration"] as? [String: Any])?.compactMapValues { $0 as? Int },
                               calibrationLoss: impJSON["calibration_loss"] as? Double,
                               parametersBefore: before, parametersAfter: model.parameterCount, nonEmbeddingBefore: nonEmbedding, removals: removals)
        plan.layerShares = pruner.layerShares.map { Dictionary(uniqueKeysWithValues: $0.map { (String($0.key), $0.value) }) }
        plan.search = search
        try Checkpoint.save(model: model, tokenizerMetadata: m.metadata, to: dir + "/model", extraFiles: ["pruning.json": try encoderData(plan)])
        modelPath = dir + "/model"
        prunedPath = modelPath
        currentPath = modelPath
        let removed = before - model.parameterCount
        log(String(format: "  parameters %@ → %@ (%.2f%% of non-embedding removed)", before.formatted(), model.parameterCount.formatted(),
                   100 * Double(removed) / Double(nonEmbedding)))
        return Outcome(status: .ran, summary: ["params_before": before, "params": model.parameterCount, "params_after": model.parameterCount,
                                               "removed_fraction_non_embedding": Double(removed) / Double(nonEmbedding),
                                               "before": layerShapes(beforeConfig), "after": layerShapes(model.config)])
    }

    // MARK: sparsify, sweep

    func sparsifier(method: SparsifyMethod, sparsity: Double, nm: String?, seed: UInt64) throws -> Sparsifier {
        var s = Sparsifier(method: method, sparsity: nm == nil ? sparsity : 0, pattern: try nm.map(NMPattern.init))
        s.seed = seed
        return s
    }

    func runSparsify(dir: String) throws -> Outcome {
        let c = recipe.sparsify!
        let m = try freshModel()
        let model = m.model
        var s = try sparsifier(method: c.method, sparsity: c.sparsity, nm: c.nm, seed: c.seed)
        let allocation = AllocationMethod(rawValue: c.allocation) ?? .uniform
        let set = c.method.needsCalibration || allocation.needsCalibration ? try calibrationSet(c.calibration, tokenizer: m.tokenizer) : nil
        try s.validate(model: model, calibration: set)
        let start = Date()
        var layerScores: [Double]?
        switch allocation {
        case .uniform: break
        case .alphapruning:
            let (ratios, alphas) = try LayerAllocation.alphaPruning(model: model, sparsity: c.sparsity, epsilon: c.epsilon)
            s.layerSparsity = ratios
            layerScores = alphas
        case .owl:
            let (ratios, outliers) = try LayerAllocation.owl(model: model, calibration: set!, sparsity: c.sparsity, m: c.owlM, lambda: c.owlLambda,
                                                             progress: progress("owl outlier ratios", total: model.layers.count, unit: "layers"))
            s.layerSparsity = ratios
            layerScores = outliers
        }
        let achieved = try s.run(model: model, calibration: set, progress: progress("sparsify \(c.method.rawValue)", total: model.layers.count, unit: "layers"))
        let seconds = Date().timeIntervalSince(start)
        for p in model.parameters { p.zeroGrad() }
        var info: [String: Any] = ["method": c.method.rawValue, "sparsity": c.sparsity, "achieved_sparsity": achieved, "seconds": seconds,
                                   "allocation": c.allocation]
        if let nm = c.nm { info["nm"] = nm }
        if let ratios = s.layerSparsity { info["layer_sparsity"] = ratios }
        if let layerScores { info[allocation == .owl ? "layer_outlier_ratios" : "layer_alphas"] = layerScores }
        try Checkpoint.save(model: model, tokenizerMetadata: m.metadata, to: dir + "/model",
                            extraFiles: ["sparsify.json": try JSONSerialization.data(withJSONObject: info, options: [.prettyPrinted, .sortedKeys])])
        modelPath = dir + "/model"
        prunedPath = modelPath
        currentPath = modelPath
        log(String(format: "  %@: %.2f%% of the linear weights are zero (%.1f s)", c.method.rawValue, 100 * achieved, seconds))
        info["params"] = model.parameterCount
        return Outcome(status: .ran, summary: info)
    }

    func runSweep(dir: String, continuing: Bool) throws -> Outcome {
        let c = recipe.sweep!
        var resumed = false
        var points: [[String: Any]] = []
        let cells = c.methods.flatMap { m in c.levels.map { (m, $0) } }
        let bar = progress("sweep", total: cells.count, unit: "cells")
        let prompt = "University is"
        var levelFreeScores: [String: [Int: [Double]]] = [:]
        // The dense model's gradients (movement, gradient, taylor) or Fisher (ewc, fisher-obs) on the calibration:
        // the same at every level, so computed once per kind.
        var denseStatistics: [String: [String: Tensor]] = [:]
        let reuse = try c.reuse.map { try reusableSweep($0, config: c) }
        for (method, level) in cells {
            let name = String(format: "cell-%@-%.4f.json", method.rawValue, level)
            let file = dir + "/" + name
            // A cell finished by this attempt, or by the sweep given to --reuse (copied in, so this one is complete).
            if let done = (continuing ? Self.readJSON(file) : nil) ?? reuse.flatMap({ Self.readJSON($0 + "/" + name) }) {
                if !FileManager.default.fileExists(atPath: file) { try Self.writeJSON(done, to: file) }
                points.append(done)
                resumed = true
                bar.advance()
                continue
            }
            let m = try freshModel()
            let model = m.model
            var point: [String: Any] = ["method": method.rawValue, "level": level]
            let set = method.needsCalibration ? try calibrationSet(c.calibration, tokenizer: m.tokenizer) : nil
            let t0 = Date()
            do {
                switch method.kind {
                case let .sparsify(sm):
                    if (sm == .bias || sm == .negBias) && !model.config.attentionBias {
                        point["not_applicable"] = "the model has no biases"
                    } else {
                        var sparsifier = try sparsifier(method: sm, sparsity: level, nm: nil, seed: c.seed)
                        if sm.needsGradients, let set {
                            let kind = sm.needsFisher ? "fisher" : "gradients"
                            if denseStatistics[kind] == nil {
                                denseStatistics[kind] = try sparsifier.denseStatistics(model: model, calibration: set)
                            }
                            sparsifier.precomputed = denseStatistics[kind]
                        }
                        point["achieved_sparsity"] = try sparsifier.run(model: model, calibration: set, progress: nil)
                    }
                case .structured, .kmeans:
                    point["removed_fraction"] = try pruneStructured(method, level: level, model: model, calibration: set, seed: c.seed, cache: &levelFreeScores)
                }
            } catch let e as PruneError {
                // A level the method cannot reach (it would empty a group) or a method the model cannot take.
                switch e {
                case .wouldEmptyGroup, .notApplicable: point["not_applicable"] = e.localizedDescription
                default: throw e
                }
            }
            if point["not_applicable"] == nil {
                point["sparsify_seconds"] = Date().timeIntervalSince(t0)
                for d in c.perplexity.datasets {
                    let r = try PerplexityEvaluator(window: c.perplexity.window, maxWindows: c.perplexity.windows)
                        .evaluate(model, tokens: try tokens(recipe.datasetPath(d), m.tokenizer), source: recipe.datasetPath(d))
                    point[d + "_ppl"] = r.ppl.isFinite ? r.ppl : Double.greatestFiniteMagnitude
                }
                let ids = try Generator(model: model, endOfSequence: m.tokenizer.eosTokenID)
                    .generate(prompt: m.tokenizer.encode(prompt, addSpecialTokens: true, parseSpecial: true).map(Int32.init),
                              options: GenerationOptions(maxTokens: 16))
                point["generation"] = prompt + m.tokenizer.decode(ids.map(Int.init), skipSpecialTokens: true)
            }
            try Self.writeJSON(point, to: file)
            points.append(point)
            bar.advance(status: String(format: "%@ %.2f: %@", method.rawValue, level,
                                       (point[(c.perplexity.datasets.first ?? "wikitext2") + "_ppl"] as? Double).map { String(format: "ppl %.2f", $0) } ?? "n/a"))
        }
        bar.finish()
        current = nil
        let sweep: [String: Any] = ["methods": c.methods.map(\.rawValue), "levels": c.levels, "datasets": c.perplexity.datasets,
                                    "window": c.perplexity.window, "windows": c.perplexity.windows, "prompt": prompt, "points": points]
        try Self.writeJSON(sweep, to: dir + "/sweep.json")
        try SweepTable(json: sweep).write(directory: dir)
        return Outcome(status: resumed ? .resumed : .ran, summary: ["cells": points.count])
    }

    /// The stage folder of an earlier sweep (`path` is its output folder or the stage folder itself) whose cells this
    /// sweep may take over: the same model and data files, calibration, perplexity settings and seed.
    func reusableSweep(_ path: String, config c: SweepConfig) throws -> String {
        let dir = FileManager.default.fileExists(atPath: path + "/02-sweep") ? path + "/02-sweep" : path
        guard let stage = Self.readJSON(dir + "/stage.json"), stage["stage"] as? String == "sweep" else {
            throw PipelineError("--reuse \(path): not the output of a sweep (no 02-sweep/stage.json)")
        }
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        // Without a manifest (an interrupted sweep) the settings cannot be checked: refuse rather than mix results.
        guard let manifest = Self.readJSON(dir + "/manifest.json"), let config = manifest["config"] as? [String: Any],
              let inputs = manifest["inputs"] as? [String: String] else {
            throw PipelineError("--reuse \(path): that sweep did not finish (no manifest to check its settings against)")
        }
        for (key, value) in [("calibration", try e.encode(c.calibration)), ("perplexity", try e.encode(c.perplexity)), ("seed", try e.encode(c.seed))] {
            let decoded = try JSONSerialization.jsonObject(with: value, options: [.fragmentsAllowed])
            guard let old = config[key],
                  try JSONSerialization.data(withJSONObject: old, options: [.sortedKeys, .fragmentsAllowed])
                    == JSONSerialization.data(withJSONObject: decoded, options: [.sortedKeys, .fragmentsAllowed]) else {
                throw PipelineError("--reuse \(path): its \(key) settings differ from this sweep's; its cells would not be comparable")
            }
        }
        let mine = try inputFingerprints(.sweep)
        for (file, recorded) in inputs where mine[file] != nil {
            guard try Self.sameContent(recorded, file) else { throw PipelineError("--reuse \(path): \(file) has changed since that sweep") }
        }
        guard Set(inputs.keys) == Set(mine.keys) else {
            throw PipelineError("--reuse \(path): it read other model or data files (\(inputs.keys.sorted().joined(separator: ", ")))")
        }
        return dir
    }

    /// One structured cell of a sweep: `level` of the non-embedding parameters removed from every layer by `method`.
    /// Scores that do not depend on the level (everything but obs) are computed once, on a fresh copy of the model, and
    /// kept in `cache`. Returns the fraction of non-embedding parameters removed.
    func pruneStructured(_ method: SweepMethod, level: Double, model: DecoderModel, calibration set: CalibrationSet?, seed: UInt64,
                         cache: inout [String: [Int: [Double]]]) throws -> Double {
        let graph = try DependencyGraphBuilder().build(model: model)
        let range = 0...(model.config.layerCount - 1)
        let pruner = StructuredPruner(ratio: level, layers: range)
        let before = model.parameterCount, nonEmbedding = before - model.config.vocabSize * model.config.hiddenSize
        let criterion: ImportanceCriterion
        switch method.kind {
        case let .structured(c): criterion = c
        case .kmeans: criterion = .taylor
        case .sparsify: throw PipelineError("\(method.rawValue) is not a structured method")
        }
        if criterion == .obs {
            guard let set else { throw PipelineError("structured-obs needs calibration windows") }
            _ = try StructuredOBS(pruner: pruner).run(model: model, graph: graph, calibration: set)
        } else {
            if cache[criterion.rawValue] == nil {
                let scoring = try freshModel().model
                let ranked = StructuredPruner.rankedGroups(graph, layers: range)
                var fisher: [String: Tensor] = [:]
                var learned: [Int: [Double]]?
                if let set, criterion.needsGradients {
                    Calibration.restrictGradients(scoring, to: Calibration.parameterNames(of: ranked))
                    if criterion.needsFisher { fisher = try Calibration.fisher(scoring, set) } else {
                        try Calibration.accumulateGradients(scoring, set, windowsPerBatch: 2)
                    }
                } else if let set, criterion.isLearned {
                    var vd = VariationalDropout()
                    vd.steps = 50
                    vd.windowsPerStep = 2
                    vd.seed = seed
                    learned = try vd.run(model: scoring, groups: ranked, calibration: set).scores
                }
                let estimator: any ImportanceEstimator = learned.map(PrecomputedScores.init)
                    ?? CriterionEstimator(criterion: criterion, aggregation: .sum, fisher: fisher, seed: seed)
                let params = Dictionary(uniqueKeysWithValues: scoring.parameters.map { ($0.name, $0) })
                var scores: [Int: [Double]] = [:]
                for g in ranked { scores[g.id] = try estimator.scores(for: g, parameters: params) }
                cache[criterion.rawValue] = scores
            }
            var removals = try pruner.plan(model: model, graph: graph, estimator: PrecomputedScores(cache[criterion.rawValue]!))
            if method.kind == .kmeans { removals = try ChannelMerging.mergeMLP(removals, graph: graph, model: model, seed: seed) }
            try StructuredPruner.apply(removals, graph: graph, to: model)
        }
        return Double(before - model.parameterCount) / Double(nonEmbedding)
    }

    // MARK: finetune, merge

    func runFinetune(dir: String, continuing: Bool) throws -> Outcome {
        let c = recipe.finetune!
        let m = try freshModel()
        let model = m.model
        let dataPath = ["wikitext2", "ptb"].contains(c.data) ? recipe.datasetPath(c.data) : c.data
        let trainer: LoRATrainer
        if c.format == "alpaca" {
            let examples = AlpacaData.tokenize(try AlpacaData.read(path: dataPath), tokenizer: m.tokenizer, maxLength: c.training.length,
                                               trainOnInputs: c.trainOnInputs)
            let (train, validation) = AlpacaData.split(examples, validation: c.training.validationWindows, seed: c.training.seed)
            trainer = try LoRATrainer(model: model, lora: c.lora, config: c.training, examples: train, validation: validation,
                                      padID: Int32(m.tokenizer.eosTokenID ?? 0))
            log("  \(dataPath): \(trainer.examples.count) training and \(trainer.validationExamples.count) validation examples")
        } else {
            trainer = try LoRATrainer(model: model, lora: c.lora, config: c.training, tokens: try tokens(dataPath, m.tokenizer))
        }
        var status = StageStatus.ran
        if continuing && FileManager.default.fileExists(atPath: dir + "/checkpoint/manifest.json") {
            try trainer.resume(directory: dir)
            status = .resumed
            log("  resuming at step \(trainer.step) of \(c.training.steps)")
        }
        log("  LoRA r=\(c.lora.rank) α=\(c.lora.alpha) on \(model.adapters.count) linears: \(trainer.trainableCount.formatted()) trainable parameters")
        let bar = progress("finetune", total: c.training.steps, unit: "steps")
        bar.advance(by: trainer.step)
        try trainer.run(directory: dir, maxSeconds: c.maxSeconds, progress: bar)
        try trainer.saveAdapters(directory: dir)
        try trainer.saveLossCurve(directory: dir)
        adaptersPath = dir
        currentPath = nil  // the model in memory now carries adapters
        var summary: [String: Any] = ["steps": trainer.step, "trainable_params": trainer.trainableCount]
        if let last = trainer.history.last { summary["loss"] = last.loss }
        if let first = trainer.history.first { summary["first_loss"] = first.loss }
        if let v = trainer.validation.last { summary["validation_loss"] = v.loss }
        return Outcome(status: status, summary: summary)
    }

    func runMerge(dir: String) throws -> Outcome {
        guard let adaptersPath else { throw PipelineError("the merge stage needs the finetune stage's adapters") }
        let m: LoadedModel
        if let current, currentPath == nil, !current.model.adapters.isEmpty {
            m = current
        } else {
            m = try freshModel()
            let a = m.model
            try LoRATrainer.loadAdapters(directory: adaptersPath, into: a)
        }
        let model = m.model
        let merged = model.adapters.count
        Self.mergeAdapters(model)
        try Checkpoint.save(model: model, tokenizerMetadata: m.metadata, to: dir + "/model")
        modelPath = dir + "/model"
        currentPath = modelPath
        self.adaptersPath = nil
        return Outcome(status: .ran, summary: ["merged_adapters": merged, "params": model.parameterCount])
    }

    /// `W += (α/r)·B·A` for every adapter, then the adapters are dropped.
    static func mergeAdapters(_ model: any AdaptableModel) {
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0) })
        for (name, a) in model.adapters { if let w = params[name] { a.merge(into: w) } }
        model.adapters = [:]
        for p in model.parameters { p.requiresGrad = true }
    }

    // MARK: evaluate

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
        var models: [String: Any] = [:]
        var resumed = false
        // Perplexity and generations of every model first (minutes), then the zero-shot tasks (much longer); each
        // part of each model is kept in its own file, so an interrupted evaluation continues where it stopped.
        for part in c.tasks.isEmpty ? ["quick"] : ["quick", "tasks"] {
            for t in targets {
                let file = dir + "/eval-\(t.label)-\(part).json"
                let result: [String: Any]
                if continuing, let done = Self.readJSON(file) {
                    result = done
                    resumed = true
                    log("  \(t.label) (\(part == "quick" ? "perplexity, generations" : "zero-shot tasks")): evaluated earlier, kept")
                } else {
                    log("  evaluating \(t.label) (\(part == "quick" ? "perplexity, generations" : "zero-shot tasks")): \(t.path)\(t.adapters.map { " + adapters \($0)" } ?? "")")
                    result = try evaluateModel(path: t.path, adapters: t.adapters, config: c, label: t.label, tasks: part == "tasks")
                    try Self.writeJSON(result, to: file)
                }
                models[t.label] = Self.mergeEvaluations(models[t.label] as? [String: Any], result)
            }
        }
        // `final` equals `pruned` when nothing changed the model after pruning.
        if c.models.contains("final"), models["final"] == nil {
            models["final"] = finalIsPruned ? models["pruned"] : finalIsBase ? models["base"] : nil
        }
        try Self.writeJSON(["models": models, "hellaswag_note": "HellaSwag is scored from llama.cpp's derived file, whose contexts do not capitalise ctx_b as lm-eval does."],
                           to: dir + "/evaluation.json")
        current = nil
        var summary: [String: Any] = [:]
        for (label, v) in models { summary[label] = (v as? [String: Any])?["metrics"] ?? [:] }
        return Outcome(status: resumed ? .resumed : .ran, summary: summary)
    }

    /// One model's evaluation parts combined: metrics and details side by side.
    static func mergeEvaluations(_ a: [String: Any]?, _ b: [String: Any]) -> [String: Any] {
        guard var out = a else { return b }
        for key in ["metrics", "details"] {
            var merged = out[key] as? [String: Any] ?? [:]
            for (k, v) in b[key] as? [String: Any] ?? [:] { merged[k] = v }
            out[key] = merged
        }
        return out
    }

    /// Perplexity and generations (`tasks` false) or the zero-shot tasks (`tasks` true) of one model.
    func evaluateModel(path: String, adapters: String?, config c: EvaluateConfig, label: String, tasks runTasks: Bool) throws -> [String: Any] {
        let m = try ModelLoader.load(path: path)
        if let adapters {
            let a = m.model
            try LoRATrainer.loadAdapters(directory: adapters, into: a)
        }
        var metrics: [String: Any] = ["params": m.model.parameterCount]
        var details: [String: Any] = [:]
        if !runTasks, let p = c.perplexity {
            for d in p.datasets {
                let path = recipe.datasetPath(d)
                let r = try PerplexityEvaluator(window: p.window, maxWindows: p.windows)
                    .evaluate(m.model, tokens: try tokens(path, m.tokenizer), source: path,
                              progress: progress("\(label) \(d) perplexity", total: p.windows, unit: "windows"))
                metrics[d.replacingOccurrences(of: "-", with: "_") + "_ppl"] = r.ppl
                details[d] = ["ppl": r.ppl, "windows": r.windows, "window": r.window, "predictions": r.predictions, "seconds": r.seconds]
                log(String(format: "  %@ %@ perplexity: %.4f (%d × %d)", label, d, r.ppl, r.windows, r.window))
            }
        }
        if runTasks && !c.tasks.isEmpty {
            let evaluator = ZeroShotEvaluator(model: m.model, tokenizer: m.tokenizer)
            let zdir = recipe.data + "/zeroshot"
            var headline: [Double] = []
            var tasks: [String: Any] = [:]
            for name in c.tasks {
                let task = try ZeroShotTasks.task(named: name)
                let n = try task.items(from: zdir + "/" + task.fileName, limit: c.limit).count
                let r = try evaluator.evaluate(task, dataDirectory: zdir, limit: c.limit, progress: progress("\(label) \(name)", total: n, unit: "items"))
                metrics[name + "_acc"] = r.acc
                if let an = r.accNorm { metrics[name + "_acc_norm"] = an }
                headline.append(r.accNorm ?? r.acc)
                var t: [String: Any] = ["acc": r.acc, "acc_stderr": r.accStderr, "n": r.n, "seconds": r.seconds]
                if let an = r.accNorm { t["acc_norm"] = an; t["acc_norm_stderr"] = r.accNormStderr ?? 0 }
                tasks[name] = t
            }
            metrics["average_acc"] = headline.reduce(0, +) / Double(headline.count)
            details["tasks"] = tasks
            details["limit"] = c.limit ?? NSNull()
        }
        if !runTasks && !c.generation.prompts.isEmpty {
            var gens: [[String: Any]] = []
            let g = Generator(model: m.model, endOfSequence: m.tokenizer.eosTokenID)
            for prompt in c.generation.prompts {
                let ids = try g.generate(prompt: m.tokenizer.encode(prompt, addSpecialTokens: true, parseSpecial: true).map(Int32.init),
                                         options: GenerationOptions(maxTokens: c.generation.maxTokens))
                gens.append(["prompt": prompt, "completion": m.tokenizer.decode(ids.map(Int.init), skipSpecialTokens: true)])
            }
            details["generations"] = gens
        }
        return ["label": label, "path": path, "adapters": adapters ?? NSNull(), "metrics": metrics, "details": details]
    }
}
