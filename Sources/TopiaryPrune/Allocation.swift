import CLAPACKE
import Foundation
import TopiaryCore
import TopiaryModels

/// Per-layer sparsity allocation.
public enum LayerAllocation {
    /// Heavy-tail exponent α of a weight matrix's empirical spectral density: the eigenvalues of WᵀW
    /// (LAPACKE `ssyevd` on the smaller Gram matrix), Hill estimator over the upper half of the spectrum
    /// (`xmin` = the median eigenvalue, as AlphaPruning's `xmin_mid`): α = 1 + n / Σ log(λᵢ / λ_min).
    public static func hillAlpha(_ w: Tensor) throws -> Double {
        let rows = w.shape[0], cols = w.shape[1], n = min(rows, cols)
        let gram = Tensor(zeros: [n, n])
        if rows <= cols {
            BLAS.gemm(transB: true, m: n, n: n, k: cols, a: w.pointer, b: w.pointer, c: gram.pointer)
        } else {
            BLAS.gemm(transA: true, m: n, n: n, k: rows, a: w.pointer, b: w.pointer, c: gram.pointer)
        }
        var eig = [Float](repeating: 0, count: n)
        let info = withExtendedLifetime(gram) {
            LAPACKE_ssyevd(LAPACK_ROW_MAJOR, CChar(UInt8(ascii: "N")), CChar(UInt8(ascii: "U")), Int32(n), gram.pointer, Int32(n), &eig)
        }
        guard info == 0 else { throw PruneError.notApplicable("eigenvalues did not converge (ssyevd info \(info))") }
        let sorted = eig.map { Double(max($0, 0)) }.sorted()
        let start = n / 2, xmin = max(sorted[start], 1e-30)
        let tail = sorted[start...]
        let logs = tail.reduce(0.0) { $0 + log(max($1, 1e-30) / xmin) }
        return 1 + Double(tail.count) / max(logs, 1e-12)
    }

    /// AlphaPruning: layers whose weights are less heavy-tailed (larger α, less trained) are pruned more.
    /// Layer α (mean over its linears) is mapped linearly to [S − ε, S + ε], then rescaled so that the
    /// parameter-weighted mean sparsity stays S.
    public static func alphaPruning(model: LlamaModel, sparsity s: Double, epsilon: Double = 0.2) throws -> (ratios: [Double], alphas: [Double]) {
        let layers = model.layers
        var alphas: [Double] = []
        var sizes: [Double] = []
        for layer in layers {
            let ws = [layer.q, layer.k, layer.v, layer.o, layer.gate, layer.up, layer.down]
            alphas.append(try ws.reduce(0.0) { $0 + (try hillAlpha($1.value)) } / Double(ws.count))
            sizes.append(Double(ws.reduce(0) { $0 + $1.value.count }))
        }
        let lo = alphas.min()!, hi = alphas.max()!
        var ratios = alphas.map { a in hi > lo ? (a - lo) / (hi - lo) * 2 * epsilon + (s - epsilon) : s }
        let mean = zip(ratios, sizes).reduce(0.0) { $0 + $1.0 * $1.1 } / sizes.reduce(0, +)
        if mean > 0 { ratios = ratios.map { min(0.99, max(0, $0 * s / mean)) } }
        return (ratios, alphas)
    }
}
