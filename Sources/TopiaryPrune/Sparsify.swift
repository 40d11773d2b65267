import CLAPACKE
import CTopiaryKernels
import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// Unstructured and N:M pruning methods. Weights keep their shapes; pruned entries become real zeros.
public enum SparsifyMethod: String, CaseIterable, Codable, Sendable {
    /// Smallest |w| first, per weight matrix.
    case magnitude
    /// Largest |w| first (the study's "prune by −weights" control).
    case negMagnitude = "neg-magnitude"
    /// By bias magnitude: only for models with biases.
    case bias
    /// Uniformly random, seeded.
    case random
    /// |w|·‖X_j‖₂ per output row, layer by layer on the outputs of the already-pruned layers.
    case wanda
    /// Optimal-brain-surgeon updates with the Hessian 2/N·XᵀX, blocks of 128 columns, layer by layer.
    case sparsegpt
    /// Movement: −Σ w·g over calibration gradients (low scores pruned).
    case movement

    public var needsCalibration: Bool { self == .wanda || self == .sparsegpt || self == .movement }
}

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
    public var percentDamp: Float = 0.01
    public var blockSize = 128

    public init(method: SparsifyMethod, sparsity: Double, pattern: NMPattern? = nil) {
        self.method = method
        self.sparsity = sparsity
        self.pattern = pattern
    }

    func layerTarget(_ l: Int) -> Double { layerSparsity?[l] ?? sparsity }

    static func linears(_ layer: LlamaLayer) -> [Parameter] { [layer.q, layer.k, layer.v, layer.o, layer.gate, layer.up, layer.down] }

    /// Checks settings against the model before any work.
    public func validate(model: LlamaModel, calibration: CalibrationSet?) throws {
        guard sparsity >= 0 && sparsity < 1 else { throw PruneError.invalidRatio(sparsity) }
        if let layerSparsity, layerSparsity.contains(where: { $0 < 0 || $0 >= 1 }) {
            throw PruneError.notApplicable("a per-layer sparsity falls outside [0, 1)")
        }
        if let pattern {
            for layer in model.layers {
                for w in Self.linears(layer) where w.shape[1] % pattern.m != 0 {
                    throw PruneError.notApplicable("--nm \(pattern): M = \(pattern.m) does not divide the input width \(w.shape[1]) of \(w.name)")
                }
            }
        }
        if method == .bias {
            throw PruneError.notApplicable("--method bias is not applicable: this model's linear layers have no biases")
        }
        if method.needsCalibration && calibration == nil {
            throw PruneError.calibration("--method \(method.rawValue) needs calibration data (--calibration FILE)")
        }
    }

    /// Runs the method over every layer. Returns the achieved sparsity of the pruned weights.
    @discardableResult
    public func run(model: LlamaModel, calibration: CalibrationSet?, progress: ProgressBar? = nil) throws -> Double {
        try validate(model: model, calibration: calibration)
        switch method {
        case .wanda, .sparsegpt:
            try sequential(model: model, calibration: calibration!, progress: progress)
        case .movement:
            let set = calibration!
            for p in model.parameters { p.requiresGrad = p.shape.count == 2 && p.name.contains(".layers.") }
            try Calibration.accumulateGradients(model, set, windowsPerBatch: windowsPerPass)
            for (l, layer) in model.layers.enumerated() {
                for w in Self.linears(layer) {
                    guard let g = w.grad else { throw PruneError.missingGradient(w.name) }
                    let metric = Tensor(uninitialized: w.shape)
                    tk_mul(w.value.pointer, g.pointer, metric.pointer, metric.count)
                    tk_scale(metric.pointer, -1, metric.pointer, metric.count)
                    prune(w, metric: metric, perRow: false, sparsity: layerTarget(l))
                    w.zeroGrad()
                }
                progress?.advance()
            }
            for p in model.parameters { p.requiresGrad = true }
        default:
            var rng = SplitMix64(seed: seed)
            for (l, layer) in model.layers.enumerated() {
                for w in Self.linears(layer) {
                    let metric = Tensor(uninitialized: w.shape)
                    for i in 0..<metric.count {
                        switch method {
                        case .magnitude: metric[i] = abs(w.value[i])
                        case .negMagnitude: metric[i] = -abs(w.value[i])
                        default: metric[i] = rng.nextFloat()
                        }
                    }
                    prune(w, metric: metric, perRow: false, sparsity: layerTarget(l))
                }
                progress?.advance()
            }
        }
        progress?.finish()
        var zeros = 0, total = 0
        for layer in model.layers { for w in Self.linears(layer) { total += w.value.count; for i in 0..<w.value.count where w.value[i] == 0 { zeros += 1 } } }
        return Double(zeros) / Double(max(total, 1))
    }

    /// Zeroes the lowest-metric weights: N:M groups when a pattern is set; otherwise per output row
    /// (`perRow`, Wanda's comparison group) or over the whole matrix.
    func prune(_ w: Parameter, metric: Tensor, perRow: Bool, sparsity: Double) {
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

    /// Wanda and SparseGPT: each layer is calibrated on the outputs of the already-pruned layers before it.
    func sequential(model: LlamaModel, calibration set: CalibrationSet, progress: ProgressBar?) throws {
        let perPass = max(1, min(windowsPerPass, set.windows))
        var chunks: [(tokens: [Int32], windows: Int)] = []
        var w = 0
        while w < set.windows {
            let n = min(perPass, set.windows - w)
            chunks.append((Array(set.tokens[(w * set.length)..<((w + n) * set.length)]), n))
            w += n
        }
        var hidden = try chunks.map { try model.embed(Graph(), tokens: $0.tokens) }
        let steps = try chunks.map { try LlamaModel.LayerSteps(model: model, batch: $0.windows, length: set.length) }
        let samples = Float(set.windows)
        for l in model.layers.indices {
            let targets = Self.linears(model.layers[l])
            let names = Set(targets.map(\.name))
            // Statistics of each linear's input: Σ x_j² (Wanda) or XᵀX (SparseGPT), shared by linears that read the same input.
            var owner: [String: String] = [:]
            var stats: [String: Tensor] = [:]
            for (c, h) in hidden.enumerated() {
                var seen: [ObjectIdentifier: String] = [:]
                var alive: [TensorStorage] = []  // keeps identities unique while this pass runs
                let g = Graph()
                g.linearInputObserver = { [method] weight, x in
                    guard names.contains(weight.name) else { return }
                    let id = ObjectIdentifier(x.storage)
                    if let first = seen[id] { owner[weight.name] = first; return }
                    seen[id] = weight.name
                    alive.append(x.storage)
                    owner[weight.name] = weight.name
                    let cols = x.shape.last!, rows = x.count / cols
                    if method == .wanda {
                        let s = stats[weight.name] ?? Tensor(zeros: [cols])
                        let sq = Tensor(uninitialized: x.shape)
                        tk_mul(x.pointer, x.pointer, sq.pointer, sq.count)
                        let sums = sq.sums(keepingAxis: 1)
                        for j in 0..<cols { s[j] += Float(sums[j]) }
                        stats[weight.name] = s
                    } else {
                        let hm = stats[weight.name] ?? Tensor(zeros: [cols, cols])
                        BLAS.gemm(transA: true, m: cols, n: cols, k: rows, alpha: 2 / samples, a: x.pointer, b: x.pointer, beta: 1, c: hm.pointer)
                        stats[weight.name] = hm
                    }
                }
                _ = try model.layer(g, l, h, steps: steps[c])
                alive.removeAll()
            }
            for wt in targets {
                guard let key = owner[wt.name], let s = stats[key], s.shape[0] == wt.shape[1] else {
                    throw PruneError.calibration("no input statistics were collected for \(wt.name)")
                }
                if method == .wanda {
                    let rows = wt.shape[0], cols = wt.shape[1]
                    let metric = Tensor(uninitialized: wt.shape)
                    let scale = (0..<cols).map { s[$0].squareRoot() }
                    for r in 0..<rows { for j in 0..<cols { metric[r * cols + j] = abs(wt.value[r * cols + j]) * scale[j] } }
                    prune(wt, metric: metric, perRow: true, sparsity: layerTarget(l))
                } else {
                    try sparseGPT(wt, hessian: s.copy(), sparsity: layerTarget(l))
                }
            }
            hidden = try hidden.enumerated().map { c, h in try model.layer(Graph(), l, h, steps: steps[c]) }
            progress?.advance()
        }
    }

    /// SparseGPT on one weight matrix `[rows, cols]` with Hessian `[cols, cols]`.
    func sparseGPT(_ weight: Parameter, hessian H: Tensor, sparsity: Double) throws {
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
        let U = CChar(UInt8(ascii: "U"))
        guard LAPACKE_spotrf(LAPACK_ROW_MAJOR, U, Int32(cols), H.pointer, Int32(cols)) == 0,
              LAPACKE_spotri(LAPACK_ROW_MAJOR, U, Int32(cols), H.pointer, Int32(cols)) == 0 else {
            throw PruneError.notApplicable("\(weight.name): the calibration Hessian is not positive definite")
        }
        for i in 0..<cols { for j in 0..<i { H[i * cols + j] = H[j * cols + i] } }  // full symmetric inverse
        guard LAPACKE_spotrf(LAPACK_ROW_MAJOR, U, Int32(cols), H.pointer, Int32(cols)) == 0 else {
            throw PruneError.notApplicable("\(weight.name): the inverse Hessian is not positive definite")
        }
        for i in 0..<cols { for j in 0..<i { H[i * cols + j] = 0 } }
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
                for r in 0..<rows { for j in 0..<count { let d = Hinv[(i1 + j) * cols + i1 + j]; let v = W1[r * count + j]; tmp[r * count + j] = v * v / (d * d) } }
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
                        for (_, j) in scores.sorted(by: { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }).prefix(pattern.n) { mask[r * count + j] = true }
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
                    cblas_sger_wrapper(rows: rows, cols: count - i - 1, x: Err1.pointer + i, incx: count,
                                       y: Hinv.pointer + (i1 + i) * cols + i1 + i + 1, a: W1.pointer + i + 1, lda: count)
                }
            }
            for r in 0..<rows { (W.pointer + r * cols + i1).update(from: W1.pointer + r * count, count: count) }
            if i2 < cols {
                // W[:, i2:] -= Err1 · Hinv[i1:i2, i2:]
                BLAS.gemm(m: rows, n: cols - i2, k: count, alpha: -1, a: Err1.pointer, lda: count,
                          b: Hinv.pointer + i1 * cols + i2, ldb: cols, beta: 1, c: W.pointer + i2, ldc: cols)
            }
            i1 = i2
        }
    }
}
