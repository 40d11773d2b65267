import ArgumentParser
import Foundation
import TopiaryCore
import TopiaryExport
import TopiaryModels
import TopiaryPipeline
import TopiaryPrune

extension SparsifyMethod: ExpressibleByArgument {}
extension AllocationMethod: ExpressibleByArgument {}
extension LayerAllocation.TailStart: ExpressibleByArgument {}

struct Sparsify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Unstructured or N:M pruning of every layer's linears: magnitude, neg-magnitude, random, random-pattern, l1-rows, bias, "
            + "neg-bias, Wanda, SparseGPT, movement, gradient, taylor, ewc.",
        discussion: """
            Weights keep their shapes; pruned entries are real zeros in the saved checkpoint. Gradient methods (movement −w·g, \
            gradient |g|, taylor |w·g|, ewc ½·F·w² with the Fisher summed over windows) use the calibration windows. \
            Wanda and SparseGPT run layer by \
            layer, each layer calibrated on the outputs of the already-pruned layers before it (calibration windows from \
            --calibration, default WikiText-2 test from token 32,768: never the evaluation windows).

            fisher-obs, Topiary's unstructured indicator: SparseGPT whose mask selection weighs each weight's saliency by \
            its output row's Fisher mass to the power --gamma (one backward per calibration window on the dense model; \
            --gamma 0 is SparseGPT).

            Example: topiary sparsify --method wanda --sparsity 0.5 --out checkpoints/smollm2-wanda50
            """)

    @OptionGroup var modelArguments: ModelArguments
    @OptionGroup var streaming: StreamingArguments
    @OptionGroup var dataArguments: DataArguments
    @Option(help: ArgumentHelp("Output checkpoint directory.", valueName: "dir")) var out: String
    @Option(help: "Method.") var method: SparsifyMethod = SparsifyConfig().method
    @Option(help: "Fraction of each layer's linear weights set to zero, in [0, 1) (default: 0.5; not with --nm).") var sparsity: Double?
    @Option(help: ArgumentHelp("N:M pattern instead of --sparsity (e.g. 2:4).", valueName: "N:M")) var nm: String?
    @Option(
        help:
            ArgumentHelp(
                "Per-layer sparsity: uniform, alphapruning (heavy-tail α of each layer's weight spectra: lighter tails pruned "
                    + "more) or owl "
                    + "(layers with more outliers of |W|·‖X‖ pruned less; uses the calibration windows).")
    )
    var allocation: AllocationMethod = .uniform
    @Option(
        name: .customLong("allocation-epsilon"),
        help: "AlphaPruning: layer sparsities span [S·(1−ε), S·(1+ε)] before the mean is restored."
    )
    var epsilon: Double = AllocationOptions().epsilon
    @Option(
        name: .customLong("alpha-tail"),
        help: "AlphaPruning: where the Hill estimator's tail starts (peak: fit near the spectrum's peak, as the paper; median).")
    var alphaTail: LayerAllocation.TailStart = AllocationOptions().tail
    @Option(name: .customLong("owl-m"), help: "OWL: a score is an outlier above M × its layer's mean score.") var owlM: Double =
        AllocationOptions().owlM
    @Option(name: .customLong("owl-lambda"), help: "OWL: layer sparsities span about [S−λ, S+λ].") var owlLambda: Double =
        AllocationOptions().owlLambda
    @OptionGroup var calibration: CalibrationArguments
    @Flag(
        name: .customLong("true-sequential"),
        help:
            ArgumentHelp(
                "Wanda/SparseGPT: prune each linear from its actual input inside the layer (q/k/v, o, gate/up, down in turn; "
                    + "one forward "
                    + "per layer) instead of calibrating all seven on the dense layer.")
    )
    var trueSequential = false
    @Option(help: "Seed for --method random.") var seed: UInt64 = SparsifyConfig().seed
    @Option(
        help:
            ArgumentHelp(
                "fisher-obs: power γ of the output rows' Fisher mass in the mask selection (0 = SparseGPT's; 0.25 chosen on "
                    + "held-out "
                    + "PTB-valid).")
    ) var gamma: Double = Sparsifier(method: .wanda, sparsity: 0).rowSensitivityPower
    @Flag(help: "Replace --out if it exists.") var force = false
    @Option(
        name: .customLong("gguf-type"),
        help:
            ArgumentHelp(
                "Streamed models (--stream-layers): storage type of the sparsified matrices in the output GGUF "
                    + "(\(GGUFExporter.typeNames.joined(separator: ", ")); zeros stay exact zeros); other tensors keep the source's bytes.")
    )
    var ggufType: String = "q8_0"

    /// The request the options describe (a recipe's sparsify stage decodes the same one).
    var request: SparsifyConfig {
        var c = SparsifyConfig()
        c.method = method
        c.sparsity = sparsity ?? c.sparsity
        c.nm = nm
        c.allocation = allocation.rawValue
        c.epsilon = epsilon
        c.alphaTail = alphaTail == AllocationOptions().tail ? nil : alphaTail
        c.owlM = owlM
        c.owlLambda = owlLambda
        c.calibration = calibration.config(c.calibration)
        c.seed = seed
        c.trueSequential = trueSequential ? true : nil
        c.gamma = gamma == Sparsifier(method: .wanda, sparsity: 0).rowSensitivityPower ? nil : gamma
        return c
    }

    func validate() throws {
        do { _ = try GGUFExporter.parseType(ggufType) } catch {
            throw ValidationError("--gguf-type \(ggufType): expected one of \(GGUFExporter.typeNames.joined(separator: ", "))")
        }
        if let sparsity, let nm {
            throw ValidationError(
                "--sparsity \(sparsity) and --nm \(nm) conflict: an N:M pattern fixes the sparsity (N of every M weights stay); give one "
                    + "of them")
        }
        try usage(.sparsify) { try request.validate() }
    }

    func run() throws {
        try reportingErrors {
            if FileManager.default.fileExists(atPath: out) && !force { throw CLIError("\(out) exists; pass --force to replace it") }
            let workflow = try SparsifyWorkflow(request)
            let c = workflow.request.calibration
            try OutputLocation.checkWritable(out, as: streaming.streamLayers > 0 ? .file : .directory)
            // A calibration text that is missing or not UTF-8 fails before the model is read.
            if workflow.request.readsCalibration { _ = try readText(c.file ?? dataArguments.wikitext) }
            let loaded = try modelArguments.load(streamLayers: streaming.streamLayers)
            let model = loaded.model
            try workflow.checkSizes(loaded)
            let set =
                workflow.request.readsCalibration
                ? try calibrationSet(workflow.request.calibration, data: dataArguments, tokenizer: loaded.tokenizer) : nil
            try workflow.check(model: model, calibration: set)  // before any work
            if model.store != nil { return try runStreamed(loaded, workflow, set) }
            let record = try workflow.run(model: model, calibration: set)
            try Checkpoint.save(
                model: model, tokenizerMetadata: loaded.metadata, to: out,
                extraFiles: ["sparsify.json": try recordEncoder.encode(record)])
            print(
                String(
                    format: "%@: %.2f%% of the linear weights are zero (%.1f s); saved %@", method.rawValue, 100 * record.achievedSparsity,
                    record.seconds, out))
        }
    }

    var recordEncoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return e
    }

    /// Layer streaming: each layer is sparsified when the GGUF writer reaches it, written, then evicted.
    func runStreamed(_ loaded: LoadedModel, _ workflow: SparsifyWorkflow, _ set: CalibrationSet?) throws {
        guard out.hasSuffix(".gguf") else {
            throw CLIError("a streamed model (--stream-layers) is written as one GGUF file: give --out a path ending in .gguf")
        }
        do { try workflow.checkStreamable() } catch let e as RequestError {
            throw CLIError(CommandLineFace.sparsify.message(e).replacingOccurrences(of: "a streamed model", with: "--stream-layers"))
        }
        let (record, report) = try workflow.runStreamed(loaded, calibration: set, to: out, type: try GGUFExporter.parseType(ggufType))
        try AtomicFile.write(try recordEncoder.encode(record), to: (out as NSString).deletingPathExtension + ".sparsify.json")
        print(
            String(
                format: "%@: %.2f%% of the linear weights are zero (%.1f s); saved %@ (%@ bytes)", method.rawValue,
                100 * record.achievedSparsity, record.seconds, out, report.bytes.formatted()))
    }
}
