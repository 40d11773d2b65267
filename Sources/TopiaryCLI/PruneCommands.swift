import ArgumentParser
import Foundation
import TopiaryCore
import TopiaryEval
import TopiaryExport
import TopiaryGraph
import TopiaryModels
import TopiaryPrune
import TopiaryTokenizers

extension ImportanceCriterion: ExpressibleByArgument {}
extension Aggregation: ExpressibleByArgument {}
extension StructuredPruner.Mode: ExpressibleByArgument {}

struct GraphCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "graph",
        abstract: "Discover the model's coupled structures from a traced forward pass and write them as JSON and Graphviz.",
        discussion: """
            Writes OUT (JSON: a top-level `groups` array, each with `kind`, `units`, `members`) and OUT with the \
            extension .dot. Each group is a set of tensor slices that must shrink together; each unit of a group can be \
            removed on its own (an attention unit is a KV head with its query heads; an MLP unit is one channel).
            """)

    @OptionGroup var modelArguments: ModelArguments
    @Option(help: ArgumentHelp("Output JSON path (e.g. graphs/smollm2-135m.json).", valueName: "path")) var out: String

    func run() throws {
        try reportingErrors {
            try OutputLocation.checkWritable(out, as: .file)
            let loaded = try modelArguments.load()
            let name = ((loaded.source as NSString).lastPathComponent as NSString).deletingPathExtension
            let graph = try DependencyGraphBuilder().build(model: loaded.model, name: name)
            try AtomicFile.write(try graph.jsonData(), to: out)
            let dotPath = (out as NSString).deletingPathExtension + ".dot"
            try AtomicFile.write(graph.dot(), to: dotPath)
            var kinds: [String: Int] = [:]
            for g in graph.groups { kinds[g.kind, default: 0] += 1 }
            print(
                "\(graph.groups.count) groups "
                    + "(\(kinds.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))) → \(out), \(dotPath)"
            )
        }
    }
}

/// `--calibration …`: the text and windows used for gradients.
struct CalibrationArguments: ParsableArguments {
    @Option(
        name: .customLong("calibration"),
        help: ArgumentHelp("Calibration text file (default: WikiText-2 test under --data).", valueName: "path"))
    var file: String?
    @Option(name: .customLong("calibration-windows"), help: "Number of calibration windows.") var windows: Int = 10
    @Option(name: .customLong("calibration-length"), help: "Tokens per calibration window.") var length: Int = 128
    @Option(
        name: .customLong("calibration-offset"),
        help: "Token offset of the first window in the tokenized text (past the evaluation windows).")
    var offset: Int = 32768

    /// The calibration windows from `--calibration` (default: `defaultFile`), tokenized with the model's tokenizer.
    func set(tokenizer: any Tokenizer, defaultFile: String) throws -> CalibrationSet {
        let path = file ?? defaultFile
        let tokens = tokenizer.encode(try readText(path), addSpecialTokens: false, parseSpecial: false).map(Int32.init)
        return try CalibrationSet(tokens: tokens, windows: windows, length: length, offset: offset, source: path)
    }

    /// The calibration sizes against the model's context length and the memory of one calibration pass of `scoring`,
    /// before anything is allocated. A streamed model keeps one layer's activations at a time: only the length is checked.
    func checkSizes(_ loaded: LoadedModel, scoring: ImportanceScoring, compensate: Bool) throws {
        let c = loaded.model.config
        try ResourceCheck.sequence(length, what: "--calibration-length \(length)", config: c, model: loaded.source)
        guard loaded.model.store == nil else { return }
        try ResourceCheck.memory(
            scoring.calibrationBytes(c, windows: windows, length: length, compensate: compensate),
            what: "calibration over --calibration-windows \(windows) × --calibration-length \(length) tokens")
    }

    func validate() throws {
        guard windows >= 1 else { throw ValidationError("--calibration-windows must be at least 1") }
        guard length >= 2 else { throw ValidationError("--calibration-length must be at least 2") }
        guard offset >= 0 else { throw ValidationError("--calibration-offset must be ≥ 0") }
    }
}

struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Structurally prune a model (remove KV-head groups and MLP channels) and save a smaller dense checkpoint.",
        discussion: """
            R (--ratio) is the fraction of non-embedding parameters to remove, spread evenly over --layers as \
            LLM-Pruner does: in each chosen layer the attention share is rounded to whole KV groups and MLP channels \
            make up the rest.

            Importance: taylor (Σ|w·g|), taylor-vector (|Σ w·g| per channel), taylor2 (Fisher ½Σ(w·g)² per window), \
            l1, l2, random, taylor-act, variational-dropout (−log α of a Gaussian gate per unit, learned on the \
            calibration windows with the model frozen: --vd-steps, --vd-lr, --vd-kl-weight), and obs.

            obs, Topiary's indicator: each layer's units are chosen by their Optimal Brain Surgeon saliency on the \
            calibration inputs that pass through the already-pruned layers, and the linear reading them (o_proj, \
            down_proj) is moved to the least-squares best (--no-compensate: choose only; --compensate gives any other \
            criterion's choice the same update). obs wants more calibration than Taylor, e.g. --calibration-windows 32 \
            --calibration-length 512.

            The checkpoint (config.json, model.safetensors, tokenizer, pruning.json, manifest.json) loads with --model \
            in every command.

            Example: topiary prune --importance taylor --ratio 0.2 --layers 3-27 --out checkpoints/smollm2-p20
            """)

    @OptionGroup var modelArguments: ModelArguments
    @OptionGroup var streaming: StreamingArguments
    @OptionGroup var dataArguments: DataArguments
    @OptionGroup var calibration: CalibrationArguments
    @Option(help: ArgumentHelp("Output checkpoint directory.", valueName: "dir")) var out: String
    @Option(help: "Importance criterion.") var importance: ImportanceCriterion = .taylor
    @Option(help: "How member scores combine into a unit's score.") var aggregation: Aggregation = .sum
    @Option(help: "taylor-act: weight of the activation-energy term against the Taylor term (both normalised per group).")
    var lambda: Double = CriterionOptions().lambda
    @Option(
        name: .customLong("taylor-order"),
        help: "taylor-act: its Taylor term, 2 (second-order Fisher, one backward per window) or 1 (element-wise first order).")
    var taylorOrder: Int = CriterionOptions().taylorOrder
    @Option(help: "Fraction of non-embedding parameters to remove, in [0, 1).") var ratio: Double
    @Option(help: ArgumentHelp("Layer range A-B (inclusive) to prune.", valueName: "A-B")) var layers: String
    @Option(help: "uniform: the same share in every layer; global: rank units across layers.") var mode: StructuredPruner.Mode = .uniform
    @Option(name: .customLong("round-to"), help: "Round kept MLP channels per layer to a multiple of this.") var roundTo: Int = 1
    @Option(help: "Seed for --importance random.") var seed: UInt64 = 0
    @Flag(
        inversion: .prefixedNo,
        help: ArgumentHelp(
            "After choosing, update the linears that read the removed units (o_proj, down_proj) by Optimal Brain Surgeon on the "
                + "calibration inputs, layer by layer (default: on for --importance obs, off otherwise).")
    )
    var compensate: Bool?
    @Option(name: .customLong("vd-steps"), help: "variational-dropout: optimisation steps (each on --vd-windows calibration windows).")
    var vdSteps: Int = CriterionOptions().vdSteps
    @Option(name: .customLong("vd-windows"), help: "variational-dropout: calibration windows per step.") var vdWindows: Int =
        CriterionOptions().vdWindows
    @Option(name: .customLong("vd-lr"), help: "variational-dropout: Adam learning rate on log α.") var vdLearningRate: Double =
        CriterionOptions().vdLearningRate
    @Option(name: .customLong("vd-kl-weight"), help: "variational-dropout: weight of the KL term (Σ KL / calibration tokens).")
    var vdKLWeight: Double = CriterionOptions().vdKLWeight
    @Option(
        name: .customLong("obs-step"),
        help: "obs: MLP channels removed per greedy step before the rest are rescored (1 = exact greedy, slower).")
    var obsStep: Int = CriterionOptions().obsStep
    @Flag(help: "Replace --out if it exists.") var force = false
    @Option(
        help:
            ArgumentHelp(
                "topiary (checkpoint directory) or hdf5 (the same, plus model.h5 with one dataset per tensor). A streamed model "
                    + "(--stream-layers) is written as one GGUF file (--out ending in .gguf).")
    )
    var format: String = "topiary"
    @Option(
        help:
            ArgumentHelp(
                "remove: drop the lowest-scored MLP channels; kmeans: merge each layer's MLP channels into as many k-means "
                    + "clusters (of their gate and up rows) as are kept — centroid rows, summed down columns. Attention units "
                    + "are removed by importance either way.")
    )
    var merge: String = "remove"
    @Option(
        help:
            ArgumentHelp(
                "How the budget is spread over --layers (uniform mode): uniform (equal shares, LLM-Pruner) or search "
                    + "(per-layer shares "
                    + "learned by an evolutionary search rewarded by perplexity on --search-windows windows of 512 tokens from "
                    + "--search-offset, held out from the evaluation windows).")
    )
    var allocation: String = "uniform"
    @Option(name: .customLong("search-evaluations"), help: "Candidates the search evaluates (uniform included).") var searchEvaluations:
        Int = 40
    @Option(name: .customLong("search-windows"), help: "Reward windows of 512 tokens.") var searchWindows: Int = 4
    @Option(
        name: .customLong("search-offset"),
        help: "Token offset of the first reward window (default: after the calibration windows, past the 64 evaluation windows).")
    var searchOffset: Int = 40960
    @Option(
        name: .customLong("gguf-type"),
        help:
            ArgumentHelp(
                "Streamed models: storage type of the pruned matrices in the GGUF (f32, f16, q8_0, q4_0, q4_1); unchanged "
                    + "tensors keep the "
                    + "source's bytes.")
    )
    var ggufType: String = "q8_0"

    /// The criteria's settings from the flags.
    var criterionOptions: CriterionOptions {
        var o = CriterionOptions()
        o.lambda = lambda
        o.taylorOrder = taylorOrder
        o.seed = seed
        o.vdSteps = vdSteps
        o.vdWindows = vdWindows
        o.vdLearningRate = vdLearningRate
        o.vdKLWeight = vdKLWeight
        o.obsStep = obsStep
        return o
    }

    var scoring: ImportanceScoring { ImportanceScoring(criterion: importance, aggregation: aggregation, options: criterionOptions) }

    func validate() throws {
        guard format == "topiary" || format == "hdf5" else { throw ValidationError("--format \(format): expected topiary or hdf5") }
        guard StructuredPruner.parseLayerSyntax(layers) != nil else {
            throw ValidationError("--layers \(layers): expected a layer range A-B with 0 ≤ A ≤ B (e.g. 3-27), or one layer A")
        }
        guard ratio >= 0 && ratio < 1 else { throw ValidationError("--ratio \(ratio) is outside [0, 1)") }
        guard roundTo >= 1 else { throw ValidationError("--round-to must be at least 1") }
        guard taylorOrder == 1 || taylorOrder == 2 else { throw ValidationError("--taylor-order \(taylorOrder): expected 1 or 2") }
        guard merge == "remove" || merge == "kmeans" else { throw ValidationError("--merge \(merge): expected remove or kmeans") }
        guard allocation == "uniform" || allocation == "search" else {
            throw ValidationError("--allocation \(allocation): expected uniform or search")
        }
        guard searchEvaluations >= 1, searchWindows >= 1, searchOffset >= 0 else {
            throw ValidationError("--search-evaluations and --search-windows must be ≥ 1, --search-offset ≥ 0")
        }
        guard obsStep >= 1 else { throw ValidationError("--obs-step must be at least 1") }
        guard vdSteps >= 1, vdWindows >= 1, vdLearningRate > 0, vdKLWeight >= 0 else {
            throw ValidationError("--vd-steps and --vd-windows must be ≥ 1, --vd-lr > 0, --vd-kl-weight ≥ 0")
        }
        if scoring.isSequential || compensate == true {
            guard allocation == "uniform", merge == "remove" else {
                throw ValidationError("--importance obs and --compensate work with --allocation uniform and --merge remove")
            }
        }
        if scoring.isSequential && mode != .uniform {
            throw ValidationError("--importance obs chooses units layer by layer: use --mode uniform")
        }
        if allocation == "search" && mode != .uniform {
            throw ValidationError(
                "--allocation search learns per-layer shares of the budget: use --mode uniform (global mode has no shares)")
        }
    }

    func run() throws {
        try reportingErrors {
            if FileManager.default.fileExists(atPath: out) && !force {
                throw CLIError("\(out) exists; pass --force to replace it")
            }
            try OutputLocation.checkWritable(out, as: streaming.streamLayers > 0 ? .file : .directory)
            // A calibration text that is missing or not UTF-8 fails before the model is read.
            if self.scoring.needs.readsCalibration || compensate == true { _ = try readText(calibration.file ?? dataArguments.wikitext) }
            let loaded = try modelArguments.load(streamLayers: streaming.streamLayers)
            let model = loaded.model
            let range = try StructuredPruner.parseLayers(layers, layerCount: model.config.layerCount)
            let scoring = self.scoring
            if scoring.needs.readsCalibration || compensate == true || scoring.isSequential {
                try calibration.checkSizes(loaded, scoring: scoring, compensate: compensate ?? scoring.isSequential)
            }
            if model.store != nil { return try runStreamed(loaded, model, range) }
            scoring.reserveMemory(model.config, windows: calibration.windows, length: calibration.length)
            let graph = try DependencyGraphBuilder().build(model: model)
            var execution = PruneExecution(pruner: StructuredPruner(ratio: ratio, layers: range, mode: mode, roundTo: roundTo))
            execution.compensate = compensate ?? scoring.isSequential
            execution.merge = merge == "kmeans" ? .kmeans : .remove
            execution.obsStep = obsStep
            execution.seed = seed
            // The calibration windows, tokenized once for whatever reads them (gradients, variational dropout, obs).
            let set =
                scoring.needs.readsCalibration || execution.compensate
                ? try calibration.set(tokenizer: loaded.tokenizer, defaultFile: dataArguments.wikitext) : nil
            let calibrationInfo = set?.summary
            let before = model.parameterCount
            let nonEmbedding = before - model.config.vocabSize * model.config.hiddenSize
            let beforeConfig = model.config
            let ranked = StructuredPruner.rankedGroups(graph, layers: range)
            let prepared = try scoring.prepare(
                model: model, groups: ranked, calibration: set,
                progress: { ProgressBar($0, total: $1, unit: $2) })
            let loss = prepared.loss
            let estimator = scoring.isSequential ? nil : prepared.estimator
            var searchSummary: [String: Double]?
            if allocation == "search", let estimator {
                let (shares, summary) = try searchShares(loaded, model, graph: graph, estimator: estimator, execution: execution)
                execution.pruner.layerShares = shares
                searchSummary = summary
            }
            let t0 = DispatchTime.now().uptimeNanoseconds
            let bar =
                set == nil || !(scoring.isSequential || execution.compensate)
                ? nil
                : ProgressBar(execution.compensate ? "obs prune + update" : "obs prune", total: model.config.layerCount, unit: "layers")
            let removals = try execution.run(model: model, graph: graph, estimator: estimator, calibration: set, progress: bar)
            let planSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let calibrationSeconds = prepared.calibrationSeconds
            var plan = PruningPlan(
                ratio: ratio, layers: Array(range), mode: execution.modeLabel, importance: importance.rawValue,
                aggregation: aggregation.rawValue, calibration: calibrationInfo, calibrationLoss: loss,
                parametersBefore: before, parametersAfter: model.parameterCount,
                nonEmbeddingBefore: nonEmbedding, removals: removals)
            plan.layerShares = execution.pruner.layerShares.map { Dictionary(uniqueKeysWithValues: $0.map { (String($0.key), $0.value) }) }
            plan.search = searchSummary
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            var extra = ["pruning.json": try encoder.encode(plan)]
            if format == "hdf5" {
                let h5 = NSTemporaryDirectory() + "topiary-\(getpid()).h5"
                defer { unlink(h5) }
                do {
                    try HDF5Export.write(
                        model: model, configJSON: String(decoding: try encoder.encode(model.config), as: UTF8.self), to: h5)
                } catch { throw OutputLocation.naming(out + "/model.h5", for: error, temporary: h5) }
                extra["model.h5"] = try Data(contentsOf: URL(fileURLWithPath: h5))
            }
            try Checkpoint.save(model: model, tokenizerMetadata: loaded.metadata, to: out, extraFiles: extra)
            printSummary(before: beforeConfig, after: model.config, plan: plan)
            if let calibrationSeconds, let set {
                // The Taylor calibration pass: one forward + backward over the windows, then |w·g| per group in the plan.
                print(
                    String(
                        format: "calibration (%d × %d tokens, forward + backward) %.2f s; scoring and planning %.2f s", set.windows,
                        set.length,
                        calibrationSeconds, planSeconds))
            }
            print("saved \(out)")
        }
    }

    /// Learns per-layer shares of the budget: each candidate prunes a fresh copy of the model (sharing the unchanged
    /// weights) by the scores computed once, and is rewarded by its perplexity on the search windows.
    func searchShares(
        _ loaded: LoadedModel, _ model: DecoderModel, graph: DependencyGraph, estimator: any ImportanceEstimator,
        execution: PruneExecution
    ) throws -> ([Int: Double], [String: Double]) {
        let scores = try ImportanceScoring.scores(
            estimator, groups: StructuredPruner.rankedGroups(graph, layers: execution.pruner.layers), model: model)
        let text = try readText(dataArguments.wikitext)
        let all = loaded.tokenizer.encode(text, addSpecialTokens: false, parseSpecial: false).map(Int32.init)
        guard searchOffset + searchWindows * 512 <= all.count else {
            throw CLIError(
                "\(dataArguments.wikitext): --search-windows \(searchWindows) × 512 from token \(searchOffset) run past its "
                    + "\(all.count) tokens"
            )
        }
        let reward = Array(all[searchOffset..<(searchOffset + searchWindows * 512)])
        let windows = searchWindows
        let (shares, summary, result) = try execution.searchShares(
            model: model, graph: graph, scores: scores, windows: windows, evaluations: searchEvaluations, offset: searchOffset,
            progress: ProgressBar("layer-ratio search", total: searchEvaluations, unit: "candidates")
        ) { try PerplexityEvaluator(window: 512, maxWindows: windows).evaluate($0, tokens: reward).ppl }
        FileHandle.standardError.write(
            Data(
                String(
                    format: "layer-ratio search: reward ppl %.4f (uniform %.4f) after %d candidates; shares %@\n",
                    result.fitness, result.uniformFitness, result.history.count,
                    result.shares.sorted { $0.key < $1.key }.map { String(format: "%d:%.2f", $0.key, $0.value) }.joined(separator: " ")
                ).utf8))
        return (shares, summary)
    }

    /// Layer streaming: scores computed one layer at a time (Taylor gradients by `Calibration.layerwiseGradients`),
    /// the plan made from shapes, and the pruned model written to a GGUF file tensor by tensor.
    func runStreamed(_ loaded: LoadedModel, _ model: DecoderModel, _ range: ClosedRange<Int>) throws {
        guard out.hasSuffix(".gguf") else {
            throw CLIError("a streamed model (--stream-layers) is written as one GGUF file: give --out a path ending in .gguf")
        }
        // Layer by layer, only what one layer's weights and first-order gradients give can be scored.
        guard scoring.needs.isSubset(of: .gradients) && compensate != true else {
            let streamable = Criteria.names.filter { ImportanceCriterion(rawValue: $0)!.needs(criterionOptions).isSubset(of: .gradients) }
            throw CLIError(
                "--importance \(importance.rawValue)\(compensate == true ? " with --compensate" : "") is not available with "
                    + "--stream-layers (use \(streamable.joined(separator: ", ")))"
            )
        }
        let type = try GGUFExporter.parseType(ggufType)
        let start = Date()
        let graph = try DependencyGraphBuilder().build(model: model)
        let ranked = StructuredPruner.rankedGroups(graph, layers: range)
        let byLayer = Dictionary(grouping: ranked, by: { $0.layer! })
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0) })
        let estimator = CriterionEstimator(criterion: importance, aggregation: aggregation, options: criterionOptions)
        var scores: [Int: [Double]] = [:]
        func score(_ l: Int) throws { for g in byLayer[l] ?? [] { scores[g.id] = try estimator.scores(for: g, parameters: params) } }
        var loss: Double?
        var calibrationInfo: [String: Int]?
        if scoring.needs.contains(.gradients) {
            let set = try calibration.set(tokenizer: loaded.tokenizer, defaultFile: dataArguments.wikitext)
            calibrationInfo = set.summary
            Calibration.restrictGradients(model, to: Calibration.parameterNames(of: ranked))
            loss = try Calibration.layerwiseGradients(
                model, set,
                progress: ProgressBar(
                    "calibration (layer by layer: forward, then backward)",
                    total: 2 * model.layers.count, unit: "layer passes")
            ) { l in try score(l) }
        } else {
            let bar = ProgressBar("scoring", total: range.count, unit: "layers")
            for l in range { try model.store!.use(layer: l); try score(l); bar.advance() }
            bar.finish()
        }
        model.store!.releaseLayers()
        let before = model.parameterCount
        let nonEmbedding = before - model.config.vocabSize * model.config.hiddenSize
        let pruner = StructuredPruner(ratio: ratio, layers: range, mode: mode, roundTo: roundTo)
        let removals = try pruner.plan(model: model, graph: graph, estimator: PrecomputedScores(scores))
        let removed = try StructuredPruner.removedIndices(removals, graph: graph)
        let config = try StructuredPruner.prunedConfig(model, removed: removed)
        let after = model.parameters.reduce(0) { total, p in
            var shape = p.shape
            for (axis, indices) in removed[p.name] ?? [:] { shape[axis] -= indices.count }
            return total + shape.reduce(1, *)
        }
        let bar = ProgressBar("writing \(out)", total: model.layers.count, unit: "layers")
        var written = -1
        let report = try GGUFExporter.exportStreamed(
            model: model, config: config, sourceMetadata: loaded.metadata, to: out, options: GGUFExportOptions(type: type),
            prepareLayer: { l in
                try model.store!.use(layer: l)
                if l != written { written = l; bar.advance() }
            },
            changed: { removed[$0.name] != nil },
            tensor: { p, _ in StructuredPruner.slice(p.value, removing: removed[p.name] ?? [:]) })
        bar.finish()
        let plan = PruningPlan(
            ratio: ratio, layers: Array(range), mode: mode.rawValue, importance: importance.rawValue,
            aggregation: aggregation.rawValue, calibration: calibrationInfo, calibrationLoss: loss,
            parametersBefore: before, parametersAfter: after, nonEmbeddingBefore: nonEmbedding, removals: removals)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(plan), to: (out as NSString).deletingPathExtension + ".pruning.json")
        printSummary(before: model.config, after: config, plan: plan)
        let store = model.store!
        print(
            String(
                format: "saved %@ (%@ bytes, %@) in %.0f s; %d layer loads, %.0f s dequantizing",
                out, report.bytes.formatted(), report.architecture, Date().timeIntervalSince(start), store.loads, store.loadSeconds))
    }

    func printSummary(before: ModelConfig, after: ModelConfig, plan: PruningPlan) {
        print("| layer | heads (KV) before → after | FFN before → after |")
        print("|---:|---|---|")
        for l in 0..<after.layerCount where before.heads[l] != after.heads[l] || before.intermediateSizes[l] != after.intermediateSizes[l] {
            print(
                "| \(l) | \(before.heads[l]) (\(before.kvHeads[l])) → \(after.heads[l]) (\(after.kvHeads[l])) | "
                    + "\(before.intermediateSizes[l]) → \(after.intermediateSizes[l]) |"
            )
        }
        let removed = plan.parametersBefore - plan.parametersAfter
        print(
            String(
                format: "parameters %@ → %@ (removed %@ = %.2f%% of non-embedding)%@", plan.parametersBefore.formatted(),
                plan.parametersAfter.formatted(), removed.formatted(), 100 * Double(removed) / Double(plan.nonEmbeddingBefore),
                plan.calibrationLoss.map { String(format: "; calibration loss %.6f", $0) } ?? ""))
    }
}
