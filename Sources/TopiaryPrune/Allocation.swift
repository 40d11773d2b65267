import CLAPACKE
import Foundation
import TopiaryCore
import TopiaryModels

/// Per-layer sparsity allocation. Every allocation keeps the parameter-weighted mean sparsity of the seven linears
/// at the target `S`.
public enum LayerAllocation {
    /// Where the Hill estimator's power-law tail starts.
    public enum TailStart: String, CaseIterable, Codable, Sendable {
        /// At the median eigenvalue (AlphaPruning's `xmin_mid`).
        case median
        /// At the eigenvalue near the peak of the log-spectrum histogram that best fits a power law (smallest
        /// Kolmogorov–Smirnov distance; AlphaPruning's default `xmin_peak`, the "fix-finger" rule).
        case peak
    }

    /// Eigenvalues of WᵀW (squared singular values of W) in ascending order, through LAPACKE `ssyevd` on the smaller
    /// Gram matrix.
    public static func spectrum(_ w: Tensor) throws -> [Double] {
        let rows = w.shape[0], cols = w.shape[1], n = min(rows, cols)
        let gram = Tensor(zeros: [n, n])
        withExtendedLifetime(w) {
            if rows <= cols {
                BLAS.gemm(transB: true, m: n, n: n, k: cols, a: w.pointer, b: w.pointer, c: gram.pointer)
            } else {
                BLAS.gemm(transA: true, m: n, n: n, k: rows, a: w.pointer, b: w.pointer, c: gram.pointer)
            }
        }
        var eig = [Float](repeating: 0, count: n)
        let info = withExtendedLifetime(gram) {
            LAPACKE_ssyevd(LAPACK_ROW_MAJOR, CChar(UInt8(ascii: "N")), CChar(UInt8(ascii: "U")), Int32(n), gram.pointer, Int32(n), &eig)
        }
        guard info == 0 else { throw PruneError.notApplicable("eigenvalues did not converge (ssyevd info \(info))") }
        return eig.map { Double(max($0, 0)) }.sorted()
    }

    /// Hill estimate of the power-law exponent of the tail that starts at `sorted[i]`:
    /// α = 1 + n / Σ_{j ≥ i} ln(λ_j / λ_i), n = count − i.
    static func hill(_ sorted: [Double], from i: Int) -> Double {
        let xmin = max(sorted[i], 1e-30)
        var logs = 0.0
        for j in i..<sorted.count { logs += log(max(sorted[j], 1e-30) / xmin) }
        return 1 + Double(sorted.count - i) / max(logs, 1e-12)
    }

    /// Heavy-tail exponent α of an ascending eigenvalue list (see `TailStart`).
    public static func hillAlpha(spectrum all: [Double], tail: TailStart = .peak) -> Double {
        let sorted = all.filter { $0 > 0 }
        guard sorted.count >= 2 else { return 0 }
        let median = sorted.count / 2
        guard tail == .peak else { return hill(sorted, from: median) }
        // Peak of a 100-bin histogram of log10 λ; candidate starts lie within [0.95, 1.5] × the peak bin's lower edge.
        let logs = sorted.map { log10($0) }
        let lo = logs.first!, hi = logs.last!, bins = 100
        guard hi > lo else { return hill(sorted, from: median) }
        var counts = [Int](repeating: 0, count: bins)
        for v in logs { counts[min(bins - 1, Int((v - lo) / (hi - lo) * Double(bins)))] += 1 }
        let peak = counts.indices.max { counts[$0] < counts[$1] }!
        let edge = pow(10, lo + (hi - lo) * Double(peak) / Double(bins))
        var best: (d: Double, alpha: Double)?
        for i in 0..<(sorted.count - 1) where sorted[i] >= 0.95 * edge && sorted[i] <= 1.5 * edge {
            let alpha = hill(sorted, from: i)
            guard alpha > 1 else { continue }
            // Kolmogorov–Smirnov distance between the tail and the fitted power law.
            let n = Double(sorted.count - i)
            var d = 0.0
            for k in 0..<(sorted.count - i) {
                d = max(d, abs(1 - pow(sorted[i + k] / sorted[i], 1 - alpha) - Double(k) / n))
            }
            if best == nil || d < best!.d { best = (d, alpha) }
        }
        return best?.alpha ?? hill(sorted, from: median)
    }

    /// Heavy-tail exponent α of one weight matrix's empirical spectral density.
    public static func hillAlpha(_ w: Tensor, tail: TailStart = .peak) throws -> Double {
        hillAlpha(spectrum: try spectrum(w), tail: tail)
    }

    /// The parameter count of each layer's seven linears.
    static func layerSizes(_ model: DecoderModel) -> [Double] {
        model.layers.map { Double(Sparsifier.linears($0).reduce(0) { $0 + $1.value.count }) }
    }

    /// Rescales `ratios` multiplicatively so that their `sizes`-weighted mean is `s`, then clamps them to [0, 0.99].
    static func keepingMean(_ ratios: [Double], sizes: [Double], sparsity s: Double) -> [Double] {
        let total = sizes.reduce(0, +)
        let mean = zip(ratios, sizes).reduce(0.0) { $0 + $1.0 * $1.1 } / max(total, 1)
        guard mean > 0 else { return ratios.map { _ in s } }
        return ratios.map { min(0.99, max(0, $0 * s / mean)) }
    }

    /// AlphaPruning's mapping: each layer's score is mapped linearly from [min, max] to [S·(1 − ε), S·(1 + ε)] (the
    /// largest score gets the most sparsity), then all are rescaled to keep the parameter-weighted mean at S.
    public static func alphaPruningRatios(scores: [Double], sizes: [Double], sparsity s: Double, epsilon: Double) -> [Double] {
        guard let lo = scores.min(), let hi = scores.max(), hi > lo else { return scores.map { _ in s } }
        let ratios = scores.map { s * ((1 - epsilon) + 2 * epsilon * ($0 - lo) / (hi - lo)) }
        return keepingMean(ratios, sizes: sizes, sparsity: s)
    }

    /// AlphaPruning: the Hill α of each linear's spectrum, averaged over the layer's seven linears; layers with larger
    /// α (lighter tails: less well trained, per heavy-tailed self-regularization) are pruned more. ε = 0.2 and the
    /// `peak` tail are the paper's settings for Wanda and SparseGPT at 70%.
    public static func alphaPruning(
        model: DecoderModel, sparsity s: Double, epsilon: Double = 0.2,
        tail: TailStart = .peak
    ) throws -> (ratios: [Double], alphas: [Double]) {
        let alphas = try model.layers.map { layer in
            let ws = Sparsifier.linears(layer)
            return try ws.reduce(0.0) { $0 + (try hillAlpha($1.value, tail: tail)) } / Double(ws.count)
        }
        return (alphaPruningRatios(scores: alphas, sizes: layerSizes(model), sparsity: s, epsilon: epsilon), alphas)
    }

    /// OWL's mapping: layer outlier ratios D are mapped linearly onto a span of 2λ, centred so that the
    /// parameter-weighted mean sparsity is S; the layer with the most outliers gets the least sparsity (S − ~λ).
    public static func owlRatios(outlierRatios d: [Double], sizes: [Double], sparsity s: Double, lambda: Double) -> [Double] {
        guard let lo = d.min(), let hi = d.max(), hi > lo else { return d.map { _ in s } }
        let scaled = d.map { ($0 - lo) / (hi - lo) * 2 * lambda }
        let total = sizes.reduce(0, +)
        let mean = zip(scaled, sizes).reduce(0.0) { $0 + $1.0 * $1.1 } / max(total, 1)
        return scaled.map { min(0.99, max(0, s - ($0 - mean))) }
    }

    /// OWL (outlier-weighed layerwise sparsity): for each layer, the fraction of its Wanda scores |W_ij|·‖X_j‖₂
    /// (over all seven linears together) that exceed `m` times the layer's mean score, with activations from the
    /// calibration windows run through the dense model; mapped by `owlRatios`.
    public static func owl(
        model: DecoderModel, calibration set: CalibrationSet, sparsity s: Double, m: Double = 5,
        lambda: Double = 0.08, windowsPerPass: Int = 4,
        progress: ProgressBar? = nil
    ) throws -> (ratios: [Double], outlierRatios: [Double]) {
        let norms = try Sparsifier(method: .wanda, sparsity: s).denseInputStatistics(
            model: model, calibration: set, windowsPerPass: windowsPerPass, progress: progress)
        var outliers: [Double] = []
        for (l, layer) in model.layers.enumerated() {
            var scores: [Float] = []
            for w in Sparsifier.linears(layer) {
                guard let n = norms[l][w.name] else { throw PruneError.calibration("no input statistics were collected for \(w.name)") }
                let rows = w.shape[0], cols = w.shape[1]
                let scale = (0..<cols).map { n[$0].squareRoot() }
                withExtendedLifetime(w.value) {
                    let p = w.value.pointer
                    for r in 0..<rows { for j in 0..<cols { scores.append(abs(p[r * cols + j]) * scale[j]) } }
                }
            }
            let mean = scores.reduce(0.0) { $0 + Double($1) } / Double(max(scores.count, 1))
            let threshold = Float(mean * m)
            outliers.append(Double(scores.reduce(0) { $0 + ($1 > threshold ? 1 : 0) }) / Double(max(scores.count, 1)))
        }
        return (owlRatios(outlierRatios: outliers, sizes: layerSizes(model), sparsity: s, lambda: lambda), outliers)
    }
}
