import CLAPACKE
import CTopiaryKernels
import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// N:M semi-structured sparsity: in every M consecutive input columns of a row, N are zero.
public struct NMPattern: Codable, Sendable, Equatable, CustomStringConvertible {
    public let n: Int, m: Int
    public init(_ text: String) throws {
        let parts = text.split(separator: ":").compactMap { Int($0) }
        guard parts.count == 2, parts[0] >= 1, parts[1] >= 2, parts[0] < parts[1], parts[1] <= 256 else {
            throw PruneError.notApplicable("--nm \(text): expected N:M with 1 ≤ N < M ≤ 256 (e.g. 2:4)")
        }
        n = parts[0]
        m = parts[1]
    }
    public var description: String { "\(n):\(m)" }
}

/// Sparsifies the seven linear weights of every decoder layer (embeddings, norms and the output head untouched).
public struct Sparsifier {
    public var method: SparsifyMethod
    /// Target sparsity (fraction of zeros) when no N:M pattern is given.
    public var sparsity: Double
    public var pattern: NMPattern?
    /// Per-layer sparsity (overrides `sparsity` layer by layer; from an allocation such as AlphaPruning).
    public var layerSparsity: [Double]?
    public var seed: UInt64 = 0
    /// Windows per forward pass in the layer-by-layer drivers.
    public var windowsPerPass = 4
    /// Wanda/SparseGPT: prune each linear as soon as its input is known inside the layer (one forward per layer over
    /// all calibration windows at once) instead of calibrating all seven on the dense layer (two forwards per layer,
    /// as the reference implementations do).
    public var trueSequential = false
    public var percentDamp: Float = 0.01
    public var blockSize = 128
    /// `fisher-obs`: the power γ of the row weights cᵣ^γ (0: SparseGPT's selection). 0.25 was chosen on held-out
    /// PTB-valid perplexity at 60% among 0, 0.25, 0.5, 0.75, 1 and 2 (BENCHMARKS.md).
    public var rowSensitivityPower = 0.25
    /// `fisher-obs`: the row weights of each linear, by weight name (filled by `run` from the Fisher).
    public internal(set) var rowWeights: [String: [Float]] = [:]
    /// The gradient-based methods' statistics of the dense model (see ``denseStatistics(model:calibration:)``), when
    /// computed earlier on the same calibration: they do not depend on the sparsity, so a sweep computes them once for
    /// all its levels. `nil`: `run` computes them.
    public var precomputed: [String: Tensor]?

    public init(method: SparsifyMethod, sparsity: Double, pattern: NMPattern? = nil) {
        self.method = method
        self.sparsity = sparsity
        self.pattern = pattern
    }

    /// What the layer-by-layer drivers accumulate (SparseGPT's Hessian unless the method says otherwise).
    var inputStatistic: InputStatistic { method.implementation.inputStatistic ?? .hessian }

    public func layerTarget(_ l: Int) -> Double { layerSparsity?[l] ?? sparsity }

    public static func linears(_ layer: DecoderLayer) -> [Parameter] {
        [layer.q, layer.k, layer.v, layer.o, layer.gate, layer.up, layer.down]
    }

    /// Checks settings against the model before any work.
    public func validate(model: DecoderModel, calibration: CalibrationSet?) throws {
        guard sparsity >= 0 && sparsity < 1 else { throw PruneError.invalidRatio(sparsity) }
        if let layerSparsity, layerSparsity.contains(where: { $0 < 0 || $0 >= 1 }) {
            throw PruneError.notApplicable("a per-layer sparsity falls outside [0, 1)")
        }
        if let pattern {
            for layer in model.layers {
                for w in Self.linears(layer) where w.shape[1] % pattern.m != 0 {
                    throw PruneError.notApplicable(
                        "--nm \(pattern): M = \(pattern.m) does not divide the input width \(w.shape[1]) of \(w.name)")
                }
            }
        }
        if method.needs.contains(.biases) && !model.config.attentionBias {
            throw PruneError.notApplicable("--method \(method.rawValue) is not applicable: this model's linear layers have no biases")
        }
        if method.needsCalibration && calibration == nil {
            throw PruneError.calibration("--method \(method.rawValue) needs calibration data (--calibration FILE)")
        }
    }

    /// What the gradient-based methods score from, for the seven linears of every layer of the (dense) `model`:
    /// the gradient of the mean calibration loss (movement, gradient, taylor) or the Fisher term ½Σₛ(w·gₛ)² (ewc,
    /// fisher-obs), by weight name. Leaves every `grad` cleared and the trainable flags as they were.
    public func denseStatistics(model: DecoderModel, calibration set: CalibrationSet) throws -> [String: Tensor] {
        guard method.needsGradients else { throw PruneError.notApplicable("--method \(method.rawValue) scores without gradients") }
        let linearNames = Set(model.layers.flatMap { Self.linears($0).map(\.name) })
        let saved = model.parameters.map(\.requiresGrad)
        for p in model.parameters { p.requiresGrad = linearNames.contains(p.name) }
        defer {
            for (p, r) in zip(model.parameters, saved) { p.requiresGrad = r; p.zeroGrad() }
        }
        if method.needsFisher {
            return try Calibration.fisher(model, set).filter { linearNames.contains($0.key) }
        }
        try Calibration.accumulateGradients(model, set, windowsPerBatch: windowsPerPass)
        var gradients: [String: Tensor] = [:]
        for p in model.parameters where linearNames.contains(p.name) {
            guard let g = p.grad else { throw PruneError.missingGradient(p.name) }
            gradients[p.name] = g
        }
        return gradients
    }

    /// Runs the method over every layer. Returns the achieved sparsity of the pruned weights.
    @discardableResult
    public func run(model: DecoderModel, calibration: CalibrationSet?, progress: ProgressBar? = nil) throws -> Double {
        try validate(model: model, calibration: calibration)
        try method.implementation.run(self, model: model, calibration: calibration, progress: progress)
        progress?.finish()
        var zeros = 0, total = 0
        for layer in model.layers { for w in Self.linears(layer) { total += w.value.count; zeros += w.value.zeroCount } }
        return Double(zeros) / Double(max(total, 1))
    }

    /// The methods that score from the layer's own weights (``WeightMetricMethod``) on one layer.
    public func pruneByWeights(_ layer: DecoderLayer, layer l: Int, rng: inout SplitMix64) {
        guard let method = method.implementation as? any WeightMetricMethod else { return }
        let biases: [String: Parameter] = [layer.q.name: layer.qBias, layer.k.name: layer.kBias, layer.v.name: layer.vBias]
            .compactMapValues { $0 }
        for w in Self.linears(layer) {
            guard let metric = method.metric(w, biases: biases, rng: &rng) else { continue }
            prune(w, metric: metric, perRow: method.perRow, sparsity: layerTarget(l))
        }
    }

    /// Zeroes the lowest-metric weights: N:M groups when a pattern is set; otherwise per output row
    /// (`perRow`, Wanda's comparison group) or over the whole matrix.
    public func prune(_ w: Parameter, metric: Tensor, perRow: Bool, sparsity: Double) {
        let rows = w.shape[0], cols = w.shape[1]
        if let pattern {
            tk_prune_nm(w.value.pointer, metric.pointer, rows, cols, pattern.n, pattern.m)
        } else if perRow {
            let scratch = Tensor(uninitialized: [cols])
            withExtendedLifetime(scratch) {
                tk_prune_rows(w.value.pointer, metric.pointer, rows, cols, Int(Double(cols) * sparsity), scratch.pointer)
            }
        } else {
            let scratch = Tensor(uninitialized: [rows * cols])
            withExtendedLifetime(scratch) {
                tk_prune_rows(w.value.pointer, metric.pointer, 1, rows * cols, Int(Double(rows * cols) * sparsity), scratch.pointer)
            }
        }
        withExtendedLifetime(metric) {}
    }

    // MARK: layer-by-layer drivers

    /// Adds one batch of a linear's input `x` (`[rows, cols]`) to its statistic: Σ x_j² per input column (Wanda),
    /// or the upper triangle of the Hessian 2/N·XᵀX (SparseGPT, N = calibration windows).
    func accumulate(_ x: Tensor, into statistic: Tensor?, windows: Int) -> Tensor {
        let cols = x.shape.last!, rows = x.count / cols
        if inputStatistic == .columnEnergy {
            let s = statistic ?? Tensor(zeros: [cols])
            withExtendedLifetime(x) { tk_col_sumsq_acc(x.pointer, rows, cols, s.pointer) }
            return s
        }
        let h = statistic ?? Tensor(zeros: [cols, cols])
        withExtendedLifetime(x) { BLAS.syrkUpperTransposed(n: cols, k: rows, alpha: 2 / Float(windows), a: x.pointer, c: h.pointer) }
        return h
    }

    /// Prunes one linear from its input statistic (see `accumulate`).
    func prune(_ wt: Parameter, statistic s: Tensor, sparsity: Double) throws {
        guard s.shape[0] == wt.shape[1] else { throw PruneError.calibration("input statistics of \(wt.name) have the wrong width") }
        if inputStatistic == .columnEnergy {
            let rows = wt.shape[0], cols = wt.shape[1]
            let metric = Tensor(uninitialized: wt.shape)
            let scale = (0..<cols).map { s[$0].squareRoot() }
            withExtendedLifetime(wt.value) { tk_abs_scale_cols(wt.value.pointer, scale, rows, cols, metric.pointer) }
            prune(wt, metric: metric, perRow: true, sparsity: sparsity)
        } else {
            try sparseGPT(wt, hessian: s.copy(), sparsity: sparsity, rowWeights: rowWeights[wt.name])
        }
    }

    /// Runs `body(i)` for every `i` in `0..<count` (calibration chunks, or independent linears) side by side
    /// (``Parallel/forEach(_:_:)``): whole forward passes in parallel instead of one GEMM at a time.
    static func parallelForEach(_ count: Int, _ body: (Int) throws -> Void) throws {
        try Parallel.forEach(count) { (i: Int, _: Int) throws in try body(i) }
    }

    /// Runs layer `l` on every chunk of `hidden`, accumulating the input statistic (see `accumulate`) of each of its
    /// seven linears (linears that read the same input share one). Returns the statistics by weight name and the
    /// layer's outputs, or nothing for them when `outputs` is false (the pass then skips the down projection's GEMM,
    /// whose product only feeds the output). `only`: the weights whose statistics are wanted (default: all seven).
    /// Chunks run in parallel; their statistics are summed in chunk order.
    func layerStatistics(
        model: DecoderModel, layer l: Int, hidden: [Var], steps: [DecoderModel.LayerSteps],
        windows: Int, outputs needed: Bool = true, only: Set<String>? = nil
    ) throws -> (statistics: [String: Tensor], outputs: [Var]) {
        let targets = Self.linears(model.layers[l]).filter { only?.contains($0.name) ?? true }
        let names = Set(targets.map(\.name))
        let results = Locked([(statistics: [String: Tensor], output: Var)?](repeating: nil, count: hidden.count))
        try Self.parallelForEach(hidden.count) { c in
            var byInput: [ObjectIdentifier: Tensor] = [:]
            var alive: [TensorStorage] = []  // keeps identities unique while this pass runs
            var stats: [String: Tensor] = [:]
            let g = Graph()
            if !needed { g.skippedLinears = [model.layers[l].down.name] }
            g.linearInputObserver = { weight, x in
                guard names.contains(weight.name) else { return }
                let id = ObjectIdentifier(x.storage)
                if let shared = byInput[id] { stats[weight.name] = shared; return }
                let s = accumulate(x, into: nil, windows: windows)
                byInput[id] = s
                alive.append(x.storage)
                stats[weight.name] = s
            }
            let output = try model.layer(g, l, hidden[c], steps: steps[c])
            alive.removeAll()
            results.update { $0[c] = (stats, output) }
        }
        let chunks = results.value.map { $0! }
        var merged: [String: Tensor] = [:]
        var byFirst: [ObjectIdentifier: Tensor] = [:]  // chunk 0's statistic → the sum, so shared inputs stay shared
        for wt in targets {
            guard let first = chunks[0].statistics[wt.name] else {
                throw PruneError.calibration("no input statistics were collected for \(wt.name)")
            }
            if let sum = byFirst[ObjectIdentifier(first.storage)] { merged[wt.name] = sum; continue }
            for chunk in chunks.dropFirst() {
                guard let s = chunk.statistics[wt.name], s.count == first.count else {
                    throw PruneError.calibration("no input statistics were collected for \(wt.name)")
                }
                withExtendedLifetime(s) { tk_add_inplace(first.pointer, s.pointer, first.count) }
            }
            byFirst[ObjectIdentifier(first.storage)] = first
            merged[wt.name] = first
        }
        return (merged, needed ? chunks.map(\.output) : [])
    }

    /// Layer `l`'s outputs on every chunk of `hidden` (chunks in parallel).
    func layerOutputs(model: DecoderModel, layer l: Int, hidden: [Var], steps: [DecoderModel.LayerSteps]) throws -> [Var] {
        let outputs = Locked([Var?](repeating: nil, count: hidden.count))
        try Self.parallelForEach(hidden.count) { c in
            let out = try model.layer(Graph(), l, hidden[c], steps: steps[c])
            outputs.update { $0[c] = out }
        }
        return outputs.value.map { $0! }
    }

    /// Input statistics of every layer's seven linears on the dense model: one forward per layer, whose outputs feed
    /// the next layer. Used by allocations that score layers before any pruning (OWL).
    func denseInputStatistics(
        model: DecoderModel, calibration set: CalibrationSet, windowsPerPass: Int,
        progress: ProgressBar? = nil
    ) throws -> [[String: Tensor]] {
        let chunks = set.chunks(perPass: windowsPerPass)
        var hidden = try chunks.map { try model.embed(Graph(), tokens: $0.tokens) }
        let steps = try chunks.map { try DecoderModel.LayerSteps(model: model, batch: $0.windows, length: set.length) }
        var result: [[String: Tensor]] = []
        for l in model.layers.indices {
            let (stats, outputs) = try layerStatistics(model: model, layer: l, hidden: hidden, steps: steps, windows: set.windows)
            result.append(stats)
            hidden = outputs
            progress?.advance()
        }
        progress?.finish()
        return result
    }

    /// Wanda and SparseGPT: each layer is calibrated on the outputs of the already-pruned layers before it.
    public func sequential(model: DecoderModel, calibration set: CalibrationSet, progress: ProgressBar?) throws {
        if trueSequential { return try sequentialInLayer(model: model, calibration: set, progress: progress) }
        let stepper = try SequentialSparsifier(self, model: model, calibration: set, progress: progress)
        try stepper.advance(through: model.layers.count - 1)
    }

    /// Runs Wanda/SparseGPT layer by layer on demand (``SequentialSparsifier/advance(through:)``): a streamed model's
    /// export calls it before writing each layer, so a pruned layer is written while it is still in memory.
    public func sequentialSparsifier(
        model: DecoderModel, calibration set: CalibrationSet, progress: ProgressBar? = nil
    ) throws -> SequentialSparsifier {
        try validate(model: model, calibration: set)
        guard method.implementation.inputStatistic != nil && !method.needsGradients else {
            throw PruneError.notApplicable(
                "layer-by-layer sparsifying (a streamed model) runs wanda and sparsegpt; --method \(method.rawValue) is not one of them")
        }
        guard !trueSequential else { throw PruneError.notApplicable("--true-sequential is not available for a streamed model") }
        return try SequentialSparsifier(self, model: model, calibration: set, progress: progress)
    }

    /// One layer of the sequential drivers: all seven linears calibrated on the dense layer, then pruned; the pruned
    /// layer's outputs are the next layer's inputs.
    func sparsifyLayer(model: DecoderModel, layer l: Int, hidden: [Var], steps: [DecoderModel.LayerSteps], windows: Int) throws -> [Var] {
        let stats = try layerStatistics(model: model, layer: l, hidden: hidden, steps: steps, windows: windows, outputs: false).statistics
        // The seven are independent now: prune them in parallel, each with single-threaded BLAS (SparseGPT's
        // column loop is a chain of small rank-one updates that gain nothing from BLAS threads).
        let targets = Self.linears(model.layers[l]), sparsity = layerTarget(l)
        try Self.parallelForEach(targets.count) { i in try prune(targets[i], statistic: stats[targets[i].name]!, sparsity: sparsity) }
        return try layerOutputs(model: model, layer: l, hidden: hidden, steps: steps)
    }

    /// One forward per layer over all calibration windows at once: each linear is pruned just before it runs, from
    /// the statistics of its actual input, which already passes through the layer's pruned linears before it
    /// (q/k/v, then o, then gate/up, then down; SparseGPT's "true sequential" order).
    func sequentialInLayer(model: DecoderModel, calibration set: CalibrationSet, progress: ProgressBar?) throws {
        var hidden = try model.embed(Graph(), tokens: set.tokens)
        let steps = try DecoderModel.LayerSteps(model: model, batch: set.windows, length: set.length)
        for l in model.layers.indices {
            let targets = Self.linears(model.layers[l])
            let names = Set(targets.map(\.name))
            let sparsity = layerTarget(l)
            var pruned: Set<String> = []
            var last: (input: TensorStorage, statistic: Tensor)?  // linears that read the same input share its statistic
            var failure: Error?
            let g = Graph()
            g.linearInputObserver = { weight, x in
                guard names.contains(weight.name), !pruned.contains(weight.name), failure == nil else { return }
                pruned.insert(weight.name)
                let statistic: Tensor
                if let last, last.input === x.storage {
                    statistic = last.statistic
                } else {
                    statistic = accumulate(x, into: nil, windows: set.windows)
                    last = (x.storage, statistic)
                }
                do { try Parallel.withSingleThreadedBLAS { try prune(weight, statistic: statistic, sparsity: sparsity) } } catch {
                    failure = error
                }
            }
            hidden = try model.layer(g, l, hidden, steps: steps)
            if let failure { throw failure }
            if let missing = targets.first(where: { !pruned.contains($0.name) }) {
                throw PruneError.calibration("no input statistics were collected for \(missing.name)")
            }
            progress?.advance()
        }
    }

    /// SparseGPT on one weight matrix `[rows, cols]` with Hessian `[cols, cols]`.
    /// `rowWeights` (one per row) scale the saliency in the block-wide mask selection (`fisher-obs`).
    func sparseGPT(_ weight: Parameter, hessian H: Tensor, sparsity: Double, rowWeights: [Float]? = nil) throws {
        let rows = weight.shape[0], cols = weight.shape[1]
        let W = weight.value
        var meanDiag = 0.0
        for i in 0..<cols {
            if H[i * cols + i] == 0 {
                H[i * cols + i] = 1
                for r in 0..<rows { W[r * cols + i] = 0 }
            }
            meanDiag += Double(H[i * cols + i])
        }
        let damp = percentDamp * Float(meanDiag / Double(cols))
        for i in 0..<cols { H[i * cols + i] += damp }
        // Hinv = upper Cholesky factor of H⁻¹ (as torch.linalg.cholesky(cholesky_inverse(cholesky(H)), upper=True)).
        // H's row-major upper triangle is the column-major lower triangle of the same symmetric matrix: LAPACK runs on
        // it in place, without the transposed copies that LAPACKE makes for row-major input.
        let L = CChar(UInt8(ascii: "L")), n = Int32(cols)
        guard LAPACKE_spotrf(LAPACK_COL_MAJOR, L, n, H.pointer, n) == 0, LAPACKE_spotri(LAPACK_COL_MAJOR, L, n, H.pointer, n) == 0 else {
            throw PruneError.notApplicable("\(weight.name): the calibration Hessian is not positive definite")
        }
        guard LAPACKE_spotrf(LAPACK_COL_MAJOR, L, n, H.pointer, n) == 0 else {
            throw PruneError.notApplicable("\(weight.name): the inverse Hessian is not positive definite")
        }
        withExtendedLifetime(H) {
            let h = H.pointer
            for i in 0..<cols { for j in 0..<i { h[i * cols + j] = 0 } }
        }
        let Hinv = H
        var i1 = 0
        while i1 < cols {
            let i2 = min(i1 + blockSize, cols), count = i2 - i1
            let W1 = Tensor(uninitialized: [rows, count]), Err1 = Tensor(zeros: [rows, count])
            for r in 0..<rows { (W1.pointer + r * count).update(from: W.pointer + r * cols + i1, count: count) }
            var mask = [Bool](repeating: false, count: rows * count)
            if pattern == nil {
                // Block-wide threshold on w²/[Hinv]_jj².
                let tmp = Tensor(uninitialized: [rows * count])
                for r in 0..<rows {
                    for j in 0..<count {
                        let d = Hinv[(i1 + j) * cols + i1 + j]; let v = W1[r * count + j]; tmp[r * count + j] = v * v / (d * d)
                    }
                }
                if let rowWeights { for r in 0..<rows { tk_scale(tmp.pointer + r * count, rowWeights[r], tmp.pointer + r * count, count) } }
                let k = Int(Double(tmp.count) * sparsity)
                if k > 0 {
                    let sorted = tmp.copy()
                    let thresh = withExtendedLifetime(sorted) { tk_select_kth(sorted.pointer, sorted.count, k) }
                    for i in 0..<tmp.count where tmp[i] <= thresh { mask[i] = true }
                }
            }
            for i in 0..<count {
                let d = Hinv[(i1 + i) * cols + i1 + i]
                if let pattern, i % pattern.m == 0 {
                    for r in 0..<rows {
                        var scores: [(Float, Int)] = []
                        for j in i..<min(i + pattern.m, count) {
                            let dj = Hinv[(i1 + j) * cols + i1 + j], v = W1[r * count + j]
                            scores.append((v * v / (dj * dj), j))
                        }
                        for (_, j) in scores.sorted(by: { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }).prefix(pattern.n) {
                            mask[r * count + j] = true
                        }
                    }
                }
                for r in 0..<rows {
                    let w = W1[r * count + i]
                    let q: Float = mask[r * count + i] ? 0 : w
                    W1[r * count + i] = q
                    Err1[r * count + i] = (w - q) / d
                }
                // W1[:, i+1:] -= err ⊗ Hinv[i, i+1:]
                if i + 1 < count {
                    cblas_sger_wrapper(
                        rows: rows, cols: count - i - 1, x: Err1.pointer + i, incx: count,
                        y: Hinv.pointer + (i1 + i) * cols + i1 + i + 1, a: W1.pointer + i + 1, lda: count)
                }
            }
            for r in 0..<rows { (W.pointer + r * cols + i1).update(from: W1.pointer + r * count, count: count) }
            if i2 < cols {
                // W[:, i2:] -= Err1 · Hinv[i1:i2, i2:]
                BLAS.gemm(
                    m: rows, n: cols - i2, k: count, alpha: -1, a: Err1.pointer, lda: count,
                    b: Hinv.pointer + i1 * cols + i2, ldb: cols, beta: 1, c: W.pointer + i2, ldc: cols)
            }
            i1 = i2
        }
    }
}

/// The state of a sequential (Wanda/SparseGPT) run between layers: the calibration activations entering the next
/// layer. With a streamed model the layer being pruned is pinned in the ``LayerStore`` until the next one starts, so
/// its pruned weights can be written before they are evicted.
public final class SequentialSparsifier {
    let sparsifier: Sparsifier
    let model: DecoderModel
    let windows: Int
    var hidden: [Var]
    let steps: [DecoderModel.LayerSteps]
    let progress: ProgressBar?
    /// The next layer to prune.
    public private(set) var next = 0

    init(_ sparsifier: Sparsifier, model: DecoderModel, calibration set: CalibrationSet, progress: ProgressBar?) throws {
        self.sparsifier = sparsifier
        self.model = model
        self.progress = progress
        windows = set.windows
        let chunks = set.chunks(perPass: sparsifier.windowsPerPass)
        hidden = try chunks.map { try model.embed(Graph(), tokens: $0.tokens) }
        steps = try chunks.map { try DecoderModel.LayerSteps(model: model, batch: $0.windows, length: set.length) }
    }

    /// Prunes every layer up to `l` that is not pruned yet.
    public func advance(through l: Int) throws {
        while next <= min(l, model.layers.count - 1) {
            try model.store?.pin(layer: next)
            hidden = try sparsifier.sparsifyLayer(model: model, layer: next, hidden: hidden, steps: steps, windows: windows)
            if next > 0 { model.store?.unpin(layer: next - 1) }
            next += 1
            progress?.advance()
        }
    }
}
