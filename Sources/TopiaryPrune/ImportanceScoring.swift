import Foundation
import TopiaryCore
import TopiaryGraph
import TopiaryModels

/// The one calibration planner: gathers on the calibration windows what a criterion declares it needs (gradients, the
/// per-window Fisher, input energies, a learning run) and gives the estimator that scores groups from it. `prune`, the
/// recipe's importance stage and the sweep all score through it.
public struct ImportanceScoring {
    public var criterion: ImportanceCriterion
    public var aggregation: Aggregation
    public var options: CriterionOptions
    /// Windows per forward + backward when gathering gradients (nil: all windows in one batch, as LLM-Pruner does).
    public var gradientWindowsPerBatch: Int?

    public init(criterion: ImportanceCriterion, aggregation: Aggregation = .sum, options: CriterionOptions = CriterionOptions()) {
        self.criterion = criterion
        self.aggregation = aggregation
        self.options = options
    }

    public var needs: CriterionNeeds { criterion.needs(options) }

    /// True when units are chosen layer by layer while pruning (``StructuredOBS``), so nothing is scored ahead.
    public var isSequential: Bool { needs.contains(.sequential) }

    /// What the planner gathered: the estimator, the calibration loss, and the seconds of the forward + backward.
    public struct Prepared {
        public var estimator: any ImportanceEstimator
        public var loss: Double?
        public var calibrationSeconds: Double?
    }

    /// The largest memory one calibration pass of this criterion needs, in bytes, over `windows` windows of `length`
    /// tokens (`compensate`: the layer-by-layer update runs too), for ``ResourceCheck/memory(_:what:available:)`` before
    /// anything is allocated: a backward over all windows for gradients (over `gradientWindowsPerBatch`, or one window
    /// for the Fisher, or `vdWindows` for variational dropout), a forward for activations, a forward without logits
    /// when layers are pruned one by one. nil when the sizes overflow; 0 when nothing is read.
    public func calibrationBytes(_ c: ModelConfig, windows: Int, length: Int, compensate: Bool = false) -> Int? {
        let needs = self.needs
        var estimates: [Int?] = [0]
        if needs.contains(.gradients) {
            estimates.append(ResourceCheck.trainingBytes(c, batch: min(windows, gradientWindowsPerBatch ?? windows), length: length))
        }
        if needs.contains(.fisher) { estimates.append(ResourceCheck.trainingBytes(c, batch: 1, length: length)) }
        if needs.contains(.learned) {
            estimates.append(ResourceCheck.trainingBytes(c, batch: min(windows, options.vdWindows), length: length))
        }
        if needs.contains(.activations) { estimates.append(ResourceCheck.forwardBytes(c, batch: windows, length: length)) }
        if needs.contains(.sequential) || compensate {
            estimates.append(ResourceCheck.forwardBytes(c, batch: windows, length: length, logitRows: 0))
        }
        guard !estimates.contains(where: { $0 == nil }) else { return nil }
        return estimates.compactMap { $0 }.max()
    }

    /// Sets aside the memory of the one backward that follows, so that it is faulted in while the graph is traced and the
    /// text tokenized (``BufferPool/reserve(bytes:)``). Call it as soon as the model is loaded.
    public func reserveMemory(_ config: ModelConfig, windows: Int, length: Int) {
        guard needs.contains(.gradients) && gradientWindowsPerBatch == nil else { return }
        BufferPool.shared.reserve(bytes: Calibration.stepBytes(config, windows: windows, length: length))
    }

    /// Gathers the statistics for scoring `groups` of `model` (`set` is nil only when nothing is read from calibration).
    /// `progress(label, total, unit)` makes a bar for each pass. Gradients are left in the parameters' `grad`.
    public func prepare(
        model: DecoderModel, groups: [PruningGroup], calibration set: CalibrationSet?,
        progress: (String, Int, String) -> ProgressBar? = { _, _, _ in nil }
    ) throws -> Prepared {
        try options.validate()
        let needs = self.needs
        var statistics = CriterionStatistics()
        var prepared = Prepared(estimator: CriterionEstimator(criterion: criterion, aggregation: aggregation, options: options))
        guard needs.readsCalibration, !needs.contains(.sequential) else { return prepared }
        guard let set else { throw PruneError.calibration("criterion \(criterion.rawValue) reads calibration windows; none were given") }
        let names = Calibration.parameterNames(of: groups)
        if needs.contains(.learned) {
            var vd = VariationalDropout()
            vd.steps = options.vdSteps
            vd.windowsPerStep = options.vdWindows
            vd.learningRate = options.vdLearningRate
            vd.klWeight = options.vdKLWeight
            vd.seed = options.seed
            let result = try vd.run(
                model: model, groups: groups, calibration: set,
                progress: progress("variational dropout", vd.steps, "steps"))
            prepared.loss = result.history.last?.loss
            prepared.estimator = PrecomputedScores(result.scores)
            return prepared
        }
        if needs.contains(.gradients) || needs.contains(.fisher) {
            // Gradients only for the tensors of the groups being ranked.
            Calibration.restrictGradients(model, to: names)
            if needs.contains(.fisher) {
                statistics.fisher = try Calibration.fisher(
                    model, set, progress: progress("calibration (per window)", set.windows, "windows"))
            }
            if needs.contains(.gradients) {
                let t0 = DispatchTime.now().uptimeNanoseconds
                prepared.loss = try Calibration.accumulateGradients(
                    model, set, windowsPerBatch: gradientWindowsPerBatch,
                    progress: progress("calibration", set.windows, "windows"))
                prepared.calibrationSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            }
        }
        if needs.contains(.activations) {
            statistics.activations = try Calibration.inputEnergies(model, set, weights: names)
        }
        prepared.estimator = CriterionEstimator(criterion: criterion, aggregation: aggregation, statistics: statistics, options: options)
        return prepared
    }

    /// Scores of every group, by id (for a plan made later, or on another copy of the model).
    public static func scores(
        _ estimator: any ImportanceEstimator, groups: [PruningGroup], model: any LanguageModel
    ) throws -> [Int: [Double]] {
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0) })
        var scores: [Int: [Double]] = [:]
        for g in groups { scores[g.id] = try estimator.scores(for: g, parameters: params) }
        return scores
    }
}
