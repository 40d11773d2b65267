import Foundation
import TopiaryCore
import TopiaryExport
import TopiaryGGUF
import TopiaryModels
import TopiaryPrune

/// Unstructured or N:M sparsity as `topiary sparsify` and a recipe's sparsify stage run it: the per-layer sparsities of
/// the allocator, then the method over every layer. Returns the record both write as `sparsify.json`.
public struct SparsifyWorkflow {
    public let request: SparsifyConfig
    public var output: WorkflowOutput

    public init(_ request: SparsifyConfig, output: WorkflowOutput = .terminal) throws {
        try request.validate()
        self.request = request
        self.output = output
    }

    /// The calibration sizes against the model's context length and the memory (the activations of every window pass
    /// through one layer at a time), before anything is allocated.
    public func checkSizes(_ loaded: LoadedModel) throws {
        guard request.readsCalibration else { return }
        let c = request.calibration
        try c.checkSizes(loaded, bytes: ResourceCheck.forwardBytes(loaded.model.config, batch: c.windows, length: c.length, logitRows: 0))
    }

    /// Checks that the model and the calibration windows suit the request, before any work.
    public func check(model: DecoderModel, calibration: CalibrationSet?) throws {
        try request.sparsifier().validate(model: model, calibration: calibration)
    }

    /// Sparsifies `model` in place.
    public func run(model: DecoderModel, calibration set: CalibrationSet?) throws -> SparsifyRecord {
        let c = request
        var s = try c.sparsifier()
        try s.validate(model: model, calibration: set)
        let start = Date()
        let allocator = c.allocationMethod.implementation
        let bar =
            allocator.needsCalibration
            ? output.progress("\(allocator.name) per-layer statistics", total: model.layers.count, unit: "layers") : nil
        let chosen = try allocator.allocate(
            model: model, sparsity: c.sparsity, calibration: set, options: c.allocationOptions, progress: bar)
        if let chosen {
            s.layerSparsity = chosen.sparsities
            output.log(
                "  \(allocator.name) per-layer sparsity (layer:\(allocator.scoreName ?? "score")→sparsity): "
                    + zip(chosen.scores, chosen.sparsities).enumerated()
                    .map { String(format: "%d:%.4g→%.3f", $0.offset, $0.element.0, $0.element.1) }.joined(separator: " "))
        }
        let achieved = try s.run(
            model: model, calibration: set,
            progress: output.progress("sparsify \(c.method.rawValue)", total: model.layers.count, unit: "layers"))
        let seconds = Date().timeIntervalSince(start)
        for p in model.parameters { p.zeroGrad() }
        var record = SparsifyRecord(
            method: c.method.rawValue, sparsity: c.sparsity, achievedSparsity: achieved, seconds: seconds,
            allocation: c.allocation, nm: c.nm, layerSparsity: s.layerSparsity)
        if let chosen, let key = allocator.recordKey { record.layerStatistics = [key: chosen.scores] }
        record.trueSequential = c.trueSequential
        record.gamma = c.gamma
        record.calibration = set.map(ImportanceFile.CalibrationInfo.init)
        output.log(String(format: "  %@: %.2f%% of the linear weights are zero (%.1f s)", c.method.rawValue, 100 * achieved, seconds))
        return record
    }

    /// Whether a streamed model (weights read from their file layer by layer) can take this request.
    public func checkStreamable() throws {
        try Require.that(
            request.allocation == "uniform", "allocation", nil,
            "{allocation} \(request.allocation) is not available for a streamed model (uniform only)")
        try Require.that(
            !request.method.needsGradients, "method", nil,
            "{method} \(request.method.rawValue) needs whole-model gradients; it is not available for a streamed model")
    }

    /// Sparsifies a streamed model into the GGUF file `out`: each layer is sparsified when the writer reaches it,
    /// written, then evicted.
    public func runStreamed(
        _ loaded: LoadedModel, calibration set: CalibrationSet?, to out: String, type: GGUFExportType
    ) throws -> (
        SparsifyRecord, ExportReport
    ) {
        try checkStreamable()
        let model = loaded.model
        guard let store = model.store else { throw PipelineError("\(loaded.source): not a streamed model") }
        let s = try request.sparsifier()
        let method = request.method
        let start = Date()
        let bar = output.progress(
            "sparsify \(method.rawValue) (layer by layer, written as it goes)", total: model.layers.count, unit: "layers")
        // Wanda/SparseGPT prune layer l from calibration activations when the writer reaches it; the other methods
        // need only the layer's own weights.
        let prepare: (Int) throws -> Void
        if let set, method.implementation.inputStatistic != nil {
            let stepper = try s.sequentialSparsifier(model: model, calibration: set, progress: bar)
            prepare = { l in try stepper.advance(through: l) }
        } else {
            var rng = SplitMix64(seed: request.seed)
            var done = -1
            prepare = { l in
                guard l > done else { return }
                try store.pin(layer: l)
                if done >= 0 { store.unpin(layer: done) }
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
        var record = SparsifyRecord(
            method: method.rawValue, sparsity: s.sparsity, achievedSparsity: Double(zeros) / Double(max(total, 1)),
            seconds: Date().timeIntervalSince(start), allocation: request.allocation, nm: request.nm, layerSparsity: nil)
        record.calibration = set.map(ImportanceFile.CalibrationInfo.init)
        record.trueSequential = request.trueSequential
        record.gamma = request.gamma
        record.ggufType = "\(type)".lowercased()
        record.layerLoads = store.loads
        return (record, report)
    }
}
