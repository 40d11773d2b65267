import ArgumentParser
import Foundation
import TopiaryCore
import TopiaryEval
import TopiaryExport
import TopiaryGraph
import TopiaryModels
import TopiaryPipeline
import TopiaryPrune
import TopiaryTokenizers

extension ImportanceCriterion: ExpressibleByArgument {}
extension Aggregation: ExpressibleByArgument {}
extension StructuredPruner.Mode: ExpressibleByArgument {}
extension BlockCriterionName: ExpressibleByArgument {}
extension BlockSelection: ExpressibleByArgument {}
extension StructuredPruner.Rounding: ExpressibleByArgument {}

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

/// `--calibration …`: the text and windows a command calibrates on (each command has its defaults, its request's).
struct CalibrationArguments: ParsableArguments {
    @Option(
        name: .customLong("calibration"),
        help: ArgumentHelp("Calibration text file (default: WikiText-2 test under --data).", valueName: "path"))
    var file: String?
    @Option(
        name: .customLong("calibration-windows"),
        help: ArgumentHelp(
            "Number of calibration windows (default: prune 32 for obs, taylor2, variational-dropout and 10 for other criteria; "
                + "sparsify and sweep 32).")) var windows: Int?
    @Option(
        name: .customLong("calibration-length"),
        help: ArgumentHelp(
            "Tokens per calibration window (default: prune 512 for obs, taylor2, variational-dropout and 128 for others; "
                + "sparsify and sweep 512)."))
    var length: Int?
    @Option(
        name: .customLong("calibration-offset"),
        help: "Token offset of the first window in the tokenized text (default: 32768, past the 64 × 512 evaluation windows).")
    var offset: Int?

    /// The request's calibration: `defaults` with what was given.
    func config(_ defaults: CalibrationConfig) -> CalibrationConfig {
        var c = defaults
        c.file = file ?? c.file
        c.windows = windows ?? c.windows
        c.length = length ?? c.length
        c.offset = offset ?? c.offset
        return c
    }
}

/// The calibration windows `c` names (its file, or WikiText-2 test under the data folder), tokenized by the model's
/// tokenizer.
func calibrationSet(_ c: CalibrationConfig, data: DataArguments, tokenizer: any Tokenizer) throws -> CalibrationSet {
    try c.set(try TokenizedText.read(c.file ?? data.wikitext, data: data.data, tokenizer: tokenizer))
}

/// A request's error as a usage error in the command's terms.
func usage(_ face: CommandLineFace, _ check: () throws -> Void) throws {
    do { try check() } catch let e as RequestError { throw ValidationError(face.message(e)) }
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

            obs, Topiary's indicator and the default (the best at 20% structured, BENCHMARKS.md): each layer's units \
            are chosen by their Optimal Brain Surgeon saliency on the calibration inputs that pass through the \
            already-pruned layers, and the linear reading them (o_proj, down_proj) is moved to the least-squares best \
            (--no-compensate: choose only; --compensate gives any other criterion's choice the same update). obs, taylor2 \
            and variational-dropout calibrate on 32 × 512 tokens by default, the others on LLM-Pruner's 10 × 128. \
            --importance taylor is LLM-Pruner's baseline.

            Depth (--blocks N): whole decoder blocks are scored on the calibration windows (--block-criterion: \
            perplexity with the block removed, the default; taylor, Σ|w·g| of the block's weights; influence, \
            ShortGPT's 1 − cos of the block's input and output), the N lowest are removed and the rest \
            renumbered: the model has \
            fewer layers, which is what speeds up batch-1 decoding. With --ratio too, the plan is mixed: the blocks \
            go first and the width prune removes what they leave of the --ratio budget.

            The checkpoint (config.json, model.safetensors, tokenizer, pruning.json, manifest.json) loads with --model \
            in every command.

            Examples: topiary prune --ratio 0.2 --layers 3-27 --out checkpoints/smollm2-p20
                      topiary prune --blocks 7 --out checkpoints/smollm2-d7
                      topiary prune --blocks 3 --ratio 0.2 --out checkpoints/smollm2-d3w
            """)

    @OptionGroup var modelArguments: ModelArguments
    @OptionGroup var streaming: StreamingArguments
    @OptionGroup var dataArguments: DataArguments
    @OptionGroup var calibration: CalibrationArguments
    @Option(help: ArgumentHelp("Output checkpoint directory.", valueName: "dir")) var out: String
    @Option(help: "Importance criterion.") var importance: ImportanceCriterion = ImportanceConfig().criterion
    @Option(help: "How member scores combine into a unit's score.") var aggregation: Aggregation = ImportanceConfig().aggregation
    @Option(help: "taylor-act: weight of the activation-energy term against the Taylor term (both normalised per group).")
    var lambda: Double = CriterionOptions().lambda
    @Option(
        name: .customLong("taylor-order"),
        help: "taylor-act: its Taylor term, 2 (second-order Fisher, one backward per window) or 1 (element-wise first order).")
    var taylorOrder: Int = CriterionOptions().taylorOrder
    @Option(
        help: "Fraction of non-embedding parameters to remove, in [0, 1) — with --blocks, the budget of blocks and width together.")
    var ratio: Double?
    @Option(
        help: ArgumentHelp(
            "Whole decoder blocks to remove (depth pruning), before the width prune; alone (no --ratio), only the blocks go.",
            valueName: "n"))
    var blocks: Int?
    @Option(
        name: .customLong("block-criterion"),
        help: ArgumentHelp(
            "How --blocks are chosen: "
                + BlockCriteria.all.map { "\($0.name) (\($0.summary))" }.joined(separator: "; ") + "."))
    var blockCriterion: BlockCriterionName?
    @Option(
        name: .customLong("block-selection"),
        help: ArgumentHelp(
            "one-shot: the --blocks lowest of one scoring (ShortGPT, Shortened LLaMA; default); iterative: one block at a "
                + "time, the rest rescored on the shallower model after each (--blocks times the cost)."))
    var blockSelection: BlockSelection?
    @Option(help: ArgumentHelp("Layer range A-B (inclusive) to prune, or all.", valueName: "A-B")) var layers: String = "all"
    @Option(help: "uniform: the same share in every layer; global: rank units across layers.") var mode: StructuredPruner.Mode = .uniform
    @Option(name: .customLong("round-to"), help: "Round kept MLP channels per layer to a multiple of this.") var roundTo: Int =
        PruneConfig(ratio: 0, layers: "all").roundTo
    @Option(
        help: ArgumentHelp(
            "How kept MLP widths meet --round-to: nearest (each layer to its nearest multiple, LLM-Pruner) or budget (down or "
                + "up per layer so the plan still removes --ratio: e.g. --round-to 256 for K-quant rows at exactly 20%)."))
    var rounding: StructuredPruner.Rounding = .nearest
    @Option(help: "Seed for --importance random.") var seed: UInt64 = ImportanceConfig().seed
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
        Int = PruneConfig.defaultSearchEvaluations
    @Option(name: .customLong("search-windows"), help: "Reward windows of 512 tokens.") var searchWindows: Int = PruneConfig
        .defaultSearchWindows
    @Option(
        name: .customLong("search-offset"),
        help: "Token offset of the first reward window (default: after the calibration windows, past the 64 evaluation windows).")
    var searchOffset: Int = PruneConfig.defaultSearchOffset
    @Option(
        name: .customLong("gguf-type"),
        help:
            ArgumentHelp(
                "Streamed models: storage type of the pruned matrices in the GGUF (\(GGUFExporter.typeNames.joined(separator: ", ")); "
                    + "unchanged tensors keep the source's bytes.")
    )
    var ggufType: String = "q8_0"

    /// The request the options describe (a recipe's importance and prune stages decode the same one).
    var request: PruneRequest {
        var i = ImportanceConfig()
        i.criterion = importance
        i.aggregation = aggregation
        i.seed = seed
        i.calibration = calibration.config(ImportanceConfig.defaultCalibration(for: importance))
        var o = CriterionOptions()
        o.lambda = lambda
        o.taylorOrder = taylorOrder
        o.vdSteps = vdSteps
        o.vdWindows = vdWindows
        o.vdLearningRate = vdLearningRate
        o.vdKLWeight = vdKLWeight
        o.obsStep = obsStep
        i.setOptions(o)
        var p = PruneConfig(ratio: ratio ?? 0, layers: layers)
        p.blocks = blocks
        p.blockCriterion = blockCriterion
        p.blockSelection = blockSelection
        p.mode = mode
        p.roundTo = roundTo
        p.rounding = rounding == .nearest ? nil : rounding
        p.allocation = allocation == "uniform" ? nil : allocation
        p.searchEvaluations = searchEvaluations
        p.searchWindows = searchWindows
        p.searchOffset = searchOffset
        p.merge = merge == "remove" ? nil : merge
        p.compensate = compensate
        return PruneRequest(importance: i, prune: p)
    }

    func validate() throws {
        guard format == "topiary" || format == "hdf5" else { throw ValidationError("--format \(format): expected topiary or hdf5") }
        do { _ = try GGUFExporter.parseType(ggufType) } catch {
            throw ValidationError("--gguf-type \(ggufType): expected one of \(GGUFExporter.typeNames.joined(separator: ", "))")
        }
        guard ratio != nil || blocks != nil else {
            throw ValidationError("give --ratio (the fraction of non-embedding parameters to remove) or --blocks (whole blocks to remove)")
        }
        try usage(.prune) { try request.validate() }
    }

    func run() throws {
        try reportingErrors {
            if FileManager.default.fileExists(atPath: out) && !force {
                throw CLIError("\(out) exists; pass --force to replace it")
            }
            try OutputLocation.checkWritable(out, as: streaming.streamLayers > 0 ? .file : .directory)
            // A calibration text that is missing or not UTF-8 fails before the model is read.
            let request = self.request
            if request.importance.needs.readsCalibration || request.compensates {
                _ = try readText(request.importance.calibration.file ?? dataArguments.wikitext)
            }
            let loaded = try modelArguments.load(streamLayers: streaming.streamLayers)
            let model = loaded.model
            let range = try request.prune.layerRange(layerCount: model.config.layerCount)
            let workflow = try PruneWorkflow(request)
            try workflow.checkSizes(loaded)
            if model.store != nil { return try runStreamed(loaded, model, range) }
            workflow.reserveMemory(model.config)
            // The calibration windows, tokenized once for whatever reads them (gradients, variational dropout, obs).
            let set =
                workflow.scoringReadsCalibration || workflow.pruningReadsCalibration
                ? try calibrationSet(request.importance.calibration, data: dataArguments, tokenizer: loaded.tokenizer) : nil
            let beforeConfig = model.config
            let t0 = DispatchTime.now().uptimeNanoseconds
            let importance = try workflow.score(model: model, layers: range, calibration: set)
            let t1 = DispatchTime.now().uptimeNanoseconds
            let plan = try workflow.prune(
                model: model, importance: importance, source: "the scores of this run", calibration: set,
                searchText: { try TokenizedText.read(dataArguments.wikitext, data: dataArguments.data, tokenizer: loaded.tokenizer) })
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
            print(
                String(
                    format: "scoring %.2f s; planning and removal %.2f s", Double(t1 - t0) / 1e9,
                    Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e9))
            print("saved \(out)")
        }
    }

    /// Layer streaming: scores computed one layer at a time (Taylor gradients by `Calibration.layerwiseGradients`),
    /// the plan made from shapes, and the pruned model written to a GGUF file tensor by tensor.
    func runStreamed(_ loaded: LoadedModel, _ model: DecoderModel, _ range: ClosedRange<Int>) throws {
        guard out.hasSuffix(".gguf") else {
            throw CLIError("a streamed model (--stream-layers) is written as one GGUF file: give --out a path ending in .gguf")
        }
        let workflow = try PruneWorkflow(request)
        do { try workflow.checkStreamable() } catch let e as RequestError {
            throw CLIError(CommandLineFace.prune.message(e).replacingOccurrences(of: "a streamed model", with: "--stream-layers"))
        }
        let start = Date()
        let result = try workflow.pruneStreamed(
            loaded, layers: range,
            calibration: { try calibrationSet(request.importance.calibration, data: dataArguments, tokenizer: loaded.tokenizer) },
            to: out, type: try GGUFExporter.parseType(ggufType))
        let (plan, config, report) = (result.plan, result.config, result.report)
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
        // Layers by their index before the prune (blocks removed first renumber the rest).
        let kept = plan.blocks?.kept ?? Array(0..<after.layerCount)
        if let blocks = plan.blocks {
            let scores = blocks.removed.map { String(format: "%d (%.4g)", $0, blocks.scores[$0]) }.joined(separator: ", ")
            print("blocks removed by \(blocks.criterion) (score): \(scores); \(before.layerCount) → \(after.layerCount) layers")
        }
        let changed = (0..<after.layerCount).filter {
            before.heads[kept[$0]] != after.heads[$0] || before.intermediateSizes[kept[$0]] != after.intermediateSizes[$0]
        }
        if !changed.isEmpty {
            print("| layer | heads (KV) before → after | FFN before → after |")
            print("|---:|---|---|")
        }
        for l in changed {
            let b = kept[l]
            print(
                "| \(b)\(b == l ? "" : " → \(l)") | \(before.heads[b]) (\(before.kvHeads[b])) → "
                    + "\(after.heads[l]) (\(after.kvHeads[l])) | \(before.intermediateSizes[b]) → \(after.intermediateSizes[l]) |"
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
