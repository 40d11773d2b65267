import ArgumentParser
import Foundation
import TopiaryCore
import TopiaryModels
import TopiaryPrune

extension SparsifyMethod: ExpressibleByArgument {}

struct Sparsify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Unstructured or N:M pruning (magnitude, neg-magnitude, random, Wanda, SparseGPT, movement) of every layer's linears.",
        discussion: """
            Weights keep their shapes; pruned entries are real zeros in the saved checkpoint. Wanda and SparseGPT run layer by
            layer, each layer calibrated on the outputs of the already-pruned layers before it (calibration windows from
            --calibration, default WikiText-2 test from token 32,768: never the evaluation windows).
            Example: topiary sparsify --method wanda --sparsity 0.5 --out checkpoints/smollm2-wanda50
            """)

    @OptionGroup var modelArguments: ModelArguments
    @OptionGroup var dataArguments: DataArguments
    @Option(help: ArgumentHelp("Output checkpoint directory.", valueName: "dir")) var out: String
    @Option(help: "Method.") var method: SparsifyMethod = .wanda
    @Option(help: "Fraction of each layer's linear weights set to zero, in [0, 1).") var sparsity: Double = 0.5
    @Option(help: ArgumentHelp("N:M pattern instead of --sparsity (e.g. 2:4).", valueName: "N:M")) var nm: String?
    @Option(help: "Per-layer allocation: uniform or alphapruning (heavy-tail α of each layer's weight spectra).") var allocation: String = "uniform"
    @Option(name: .customLong("allocation-epsilon"), help: "AlphaPruning: per-layer sparsity spans [S−ε, S+ε].") var epsilon: Double = 0.2
    @Option(name: .customLong("calibration"), help: ArgumentHelp("Calibration text (default: WikiText-2 test under --data).", valueName: "path"))
    var calibrationFile: String?
    @Option(name: .customLong("calibration-windows"), help: "Calibration windows.") var windows: Int = 32
    @Option(name: .customLong("calibration-length"), help: "Tokens per calibration window.") var length: Int = 512
    @Option(name: .customLong("calibration-offset"), help: "Token offset of the first calibration window.") var offset: Int = 32768
    @Option(help: "Seed for --method random.") var seed: UInt64 = 0
    @Flag(help: "Replace --out if it exists.") var force = false

    func validate() throws {
        guard sparsity >= 0 && sparsity < 1 else { throw ValidationError("--sparsity \(sparsity) is outside [0, 1)") }
        if let nm { _ = try NMPattern(nm) }
        guard allocation == "uniform" || allocation == "alphapruning" else {
            throw ValidationError("--allocation \(allocation): expected uniform or alphapruning (owl is not available yet)")
        }
        guard epsilon >= 0 && epsilon < 0.5 else { throw ValidationError("--allocation-epsilon must be in [0, 0.5)") }
        guard windows >= 1, length >= 2, offset >= 0 else { throw ValidationError("calibration windows ≥ 1, length ≥ 2, offset ≥ 0") }
    }

    func run() throws {
        try reportingErrors {
            if FileManager.default.fileExists(atPath: out) && !force { throw CLIError("\(out) exists; pass --force to replace it") }
            let loaded = try modelArguments.load()
            guard let model = loaded.model as? LlamaModel else { throw CLIError("sparsify supports LLaMA-family models") }
            var s = Sparsifier(method: method, sparsity: nm == nil ? sparsity : 0, pattern: try nm.map(NMPattern.init))
            s.seed = seed
            if allocation == "alphapruning" {
                guard nm == nil else { throw CLIError("--allocation alphapruning applies to unstructured --sparsity, not --nm") }
                let (ratios, alphas) = try LayerAllocation.alphaPruning(model: model, sparsity: sparsity, epsilon: epsilon)
                s.layerSparsity = ratios
                FileHandle.standardError.write(Data(("AlphaPruning per-layer sparsity: " + zip(alphas, ratios).enumerated()
                    .map { String(format: "%d:α%.2f→%.3f", $0.offset, $0.element.0, $0.element.1) }.joined(separator: " ") + "\n").utf8))
            }
            var set: CalibrationSet?
            if method.needsCalibration {
                let path = calibrationFile ?? dataArguments.wikitext
                let tokens = loaded.tokenizer.encode(try readText(path), addSpecialTokens: false, parseSpecial: false).map(Int32.init)
                set = try CalibrationSet(tokens: tokens, windows: windows, length: length, offset: offset, source: path)
            }
            try s.validate(model: model, calibration: set)
            let start = Date()
            let achieved = try s.run(model: model, calibration: set, progress: ProgressBar("sparsify \(method.rawValue)", total: model.layers.count, unit: "layers"))
            let seconds = Date().timeIntervalSince(start)
            let info: [String: Any] = ["method": method.rawValue, "sparsity": sparsity, "nm": nm ?? "", "achieved_sparsity": achieved,
                                       "seconds": seconds, "calibration": set.map { ["windows": $0.windows, "length": $0.length, "offset": $0.offset] } ?? [:]]
            try Checkpoint.save(model: model, tokenizerMetadata: loaded.metadata, to: out,
                                extraFiles: ["sparsify.json": try JSONSerialization.data(withJSONObject: info, options: [.prettyPrinted, .sortedKeys])])
            print(String(format: "%@: %.2f%% of the linear weights are zero (%.1f s); saved %@", method.rawValue, 100 * achieved, seconds, out))
        }
    }
}
