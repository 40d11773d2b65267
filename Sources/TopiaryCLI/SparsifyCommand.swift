import ArgumentParser
import Foundation
import TopiaryCore
import TopiaryExport
import TopiaryModels
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
    @Option(help: "Method.") var method: SparsifyMethod = .wanda
    @Option(name: .customLong("sparsity"), help: "Fraction of each layer's linear weights set to zero, in [0, 1) (default: 0.5).")
    var sparsityOption: Double?
    /// --sparsity, 0.5 when not given (nil tells that it was not given, for the conflict with --nm).
    var sparsity: Double { sparsityOption ?? 0.5 }
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
    @Option(
        name: .customLong("calibration"), help: ArgumentHelp("Calibration text (default: WikiText-2 test under --data).", valueName: "path")
    )
    var calibrationFile: String?
    @Option(name: .customLong("calibration-windows"), help: "Calibration windows.") var windows: Int = 32
    @Option(name: .customLong("calibration-length"), help: "Tokens per calibration window.") var length: Int = 512
    @Option(name: .customLong("calibration-offset"), help: "Token offset of the first calibration window.") var offset: Int = 32768
    @Flag(
        name: .customLong("true-sequential"),
        help:
            ArgumentHelp(
                "Wanda/SparseGPT: prune each linear from its actual input inside the layer (q/k/v, o, gate/up, down in turn; "
                    + "one forward "
                    + "per layer) instead of calibrating all seven on the dense layer.")
    )
    var trueSequential = false
    @Option(help: "Seed for --method random.") var seed: UInt64 = 0
    @Option(
        help:
            ArgumentHelp(
                "fisher-obs: power γ of the output rows' Fisher mass in the mask selection (0 = SparseGPT's; 0.25 chosen on "
                    + "held-out "
                    + "PTB-valid).")
    ) var gamma: Double = 0.25
    @Flag(help: "Replace --out if it exists.") var force = false
    @Option(
        name: .customLong("gguf-type"),
        help:
            ArgumentHelp(
                "Streamed models (--stream-layers): storage type of the sparsified matrices in the output GGUF (f32, f16, "
                    + "q8_0, q4_0, q4_1; "
                    + "zeros stay exact zeros); other tensors keep the source's bytes.")
    )
    var ggufType: String = "q8_0"

    func validate() throws {
        guard sparsity >= 0 && sparsity < 1 else { throw ValidationError("--sparsity \(sparsity) is outside [0, 1)") }
        if let nm {
            do { _ = try NMPattern(nm) } catch { throw ValidationError(error.localizedDescription) }
        }
        if let nm, let sparsityOption {
            throw ValidationError(
                "--sparsity \(sparsityOption) and --nm \(nm) conflict: an N:M pattern fixes the sparsity (N of every M weights "
                    + "stay); give one of them")
        }
        guard epsilon >= 0 && epsilon < 1 else { throw ValidationError("--allocation-epsilon must be in [0, 1)") }
        guard owlM > 0 else { throw ValidationError("--owl-m must be positive") }
        guard owlLambda >= 0 && owlLambda < 0.5 else { throw ValidationError("--owl-lambda must be in [0, 0.5)") }
        if allocation != .uniform && nm != nil {
            throw ValidationError("--allocation \(allocation.rawValue) applies to --sparsity, not --nm")
        }
        guard windows >= 1, length >= 2, offset >= 0 else { throw ValidationError("calibration windows ≥ 1, length ≥ 2, offset ≥ 0") }
        guard gamma >= 0 && gamma.isFinite else { throw ValidationError("--gamma must be ≥ 0") }
    }

    func run() throws {
        try reportingErrors {
            if FileManager.default.fileExists(atPath: out) && !force { throw CLIError("\(out) exists; pass --force to replace it") }
            try OutputLocation.checkWritable(out, as: streaming.streamLayers > 0 ? .file : .directory)
            // A calibration text that is missing or not UTF-8 fails before the model is read.
            if method.needsCalibration || allocation.needsCalibration { _ = try readText(calibrationFile ?? dataArguments.wikitext) }
            let loaded = try modelArguments.load(streamLayers: streaming.streamLayers)
            let model = loaded.model
            if method.needsCalibration || allocation.needsCalibration {
                try ResourceCheck.sequence(length, what: "--calibration-length \(length)", config: model.config, model: loaded.source)
                // The calibration activations of every window pass through one layer at a time.
                try ResourceCheck.memory(
                    ResourceCheck.forwardBytes(model.config, batch: windows, length: length, logitRows: 0),
                    what: "calibration over --calibration-windows \(windows) × --calibration-length \(length) tokens")
            }
            var s = Sparsifier(method: method, sparsity: nm == nil ? sparsity : 0, pattern: try nm.map(NMPattern.init))
            s.seed = seed
            s.trueSequential = trueSequential
            s.rowSensitivityPower = gamma
            var set: CalibrationSet?
            if method.needsCalibration || allocation.needsCalibration {
                let path = calibrationFile ?? dataArguments.wikitext
                let tokens = loaded.tokenizer.encode(try readText(path), addSpecialTokens: false, parseSpecial: false).map(Int32.init)
                set = try CalibrationSet(tokens: tokens, windows: windows, length: length, offset: offset, source: path)
            }
            try s.validate(model: model, calibration: set)  // before any work (run checks the per-layer sparsities again)
            if model.store != nil { return try runStreamed(loaded, model, s, set) }
            let start = Date()
            var options = AllocationOptions()
            options.epsilon = epsilon
            options.tail = alphaTail
            options.owlM = owlM
            options.owlLambda = owlLambda
            let allocator = allocation.implementation
            let bar =
                allocator.needsCalibration
                ? ProgressBar("\(allocator.name) per-layer statistics", total: model.layers.count, unit: "layers") : nil
            if let chosen = try allocator.allocate(model: model, sparsity: sparsity, calibration: set, options: options, progress: bar) {
                s.layerSparsity = chosen.sparsities
                FileHandle.standardError.write(
                    Data(
                        ("\(allocation.rawValue) per-layer sparsity (layer:\(allocator.scoreName ?? "score")→sparsity): "
                            + zip(chosen.scores, chosen.sparsities).enumerated()
                            .map { String(format: "%d:%.4g→%.3f", $0.offset, $0.element.0, $0.element.1) }.joined(separator: " ") + "\n")
                            .utf8))
            }
            let achieved = try s.run(
                model: model, calibration: set,
                progress: ProgressBar("sparsify \(method.rawValue)", total: model.layers.count, unit: "layers"))
            let seconds = Date().timeIntervalSince(start)
            let info: [String: Any] = [
                "method": method.rawValue, "sparsity": sparsity, "nm": nm ?? "", "allocation": allocation.rawValue,
                "layer_sparsity": s.layerSparsity ?? [], "true_sequential": trueSequential, "achieved_sparsity": achieved,
                "seconds": seconds, "calibration": set?.summary ?? [:],
            ]
            try Checkpoint.save(
                model: model, tokenizerMetadata: loaded.metadata, to: out,
                extraFiles: ["sparsify.json": try JSONSerialization.data(withJSONObject: info, options: [.prettyPrinted, .sortedKeys])])
            print(
                String(
                    format: "%@: %.2f%% of the linear weights are zero (%.1f s); saved %@", method.rawValue, 100 * achieved, seconds, out))
        }
    }

    /// Layer streaming: each layer is sparsified when the GGUF writer reaches it, written, then evicted.
    func runStreamed(_ loaded: LoadedModel, _ model: DecoderModel, _ s: Sparsifier, _ set: CalibrationSet?) throws {
        guard out.hasSuffix(".gguf") else {
            throw CLIError("a streamed model (--stream-layers) is written as one GGUF file: give --out a path ending in .gguf")
        }
        guard allocation == .uniform else {
            throw CLIError("--allocation \(allocation.rawValue) is not available with --stream-layers (uniform only)")
        }
        guard !method.needsGradients else {
            throw CLIError("--method \(method.rawValue) needs whole-model gradients; it is not available with --stream-layers")
        }
        let type = try GGUFExporter.parseType(ggufType)
        let start = Date()
        let bar = ProgressBar("sparsify \(method.rawValue) (layer by layer, written as it goes)", total: model.layers.count, unit: "layers")
        // Wanda/SparseGPT prune layer l from calibration activations when the writer reaches it; the other methods
        // need only the layer's own weights.
        let prepare: (Int) throws -> Void
        if let set, method.implementation.inputStatistic != nil {
            let stepper = try s.sequentialSparsifier(model: model, calibration: set, progress: bar)
            prepare = { l in try stepper.advance(through: l) }
        } else {
            var rng = SplitMix64(seed: seed)
            var done = -1
            prepare = { l in
                guard l > done else { return }
                try model.store!.pin(layer: l)
                if done >= 0 { model.store!.unpin(layer: done) }
                s.pruneByWeights(model.layers[l], layer: l, rng: &rng)
                done = l
                bar.advance()
            }
        }
        let linears = Set(model.layers.flatMap { [$0.q, $0.k, $0.v, $0.o, $0.gate, $0.up, $0.down].map(\.name) })
        var zeros = 0, total = 0
        defer { bar.finish() }
        let report = try GGUFExporter.exportStreamed(
            model: model, config: model.config, sourceMetadata: loaded.metadata, to: out, options: GGUFExportOptions(type: type),
            prepareLayer: prepare,
            changed: { linears.contains($0.name) },
            tensor: { p, _ in
                let t = p.value
                total += t.count
                zeros += t.zeroCount
                return t
            })
        let achieved = Double(zeros) / Double(max(total, 1))
        let seconds = Date().timeIntervalSince(start)
        let info: [String: Any] = [
            "method": method.rawValue, "sparsity": sparsity, "nm": nm ?? "", "achieved_sparsity": achieved, "seconds": seconds,
            "calibration": set?.summary ?? [:], "gguf_type": ggufType,
            "layer_loads": model.store!.loads,
        ]
        try AtomicFile.write(
            try JSONSerialization.data(withJSONObject: info, options: [.prettyPrinted, .sortedKeys]),
            to: (out as NSString).deletingPathExtension + ".sparsify.json")
        print(
            String(
                format: "%@: %.2f%% of the linear weights are zero (%.1f s); saved %@ (%@ bytes)", method.rawValue, 100 * achieved, seconds,
                out,
                report.bytes.formatted()))
    }
}
