import CBLAS

/// Thin wrappers over `cblas_sgemm` on row-major buffers.
public enum BLAS {
    /// `C = alpha · op(A) · op(B) + beta · C`, row-major, with `op(A)` of shape `[m, k]` and `op(B)` `[k, n]`.
    ///
    /// - Parameters:
    ///   - transA: when true, `A` is stored as `[k, m]` (leading dimension `lda`, default `m`).
    ///   - transB: when true, `B` is stored as `[n, k]` (leading dimension `ldb`, default `k`).
    @inlinable
    public static func gemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil,
        b: UnsafePointer<Float>, ldb: Int? = nil,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil
    ) {
        guard m > 0, n > 0 else { return }
        let lda = lda ?? (transA ? m : k)
        let ldb = ldb ?? (transB ? k : n)
        let ldc = ldc ?? n
        if k == 0 {
            // BLAS leaves C untouched only for beta == 1; make the k == 0 case explicit.
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] *= beta } }
            return
        }
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// `C += alpha · Aᵀ·A` on the upper triangle of the row-major `[n, n]` matrix `C`, for `A` stored row-major as
    /// `[k, n]` (`cblas_ssyrk`; the strict lower triangle of `C` is not touched).
    @inlinable
    public static func syrkUpperTransposed(n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>) {
        guard n > 0, k > 0 else { return }
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(n), Int32(k), alpha, a, Int32(n), 1, c, Int32(n))
    }

    /// `y += alpha · x` over `n` floats.
    @inlinable
    public static func axpy(n: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        guard n > 0 else { return }
        cblas_saxpy(Int32(n), alpha, x, 1, y, 1)
    }

    /// `y += alpha · x` over `n` strided floats (`x[i·incX]`, `y[i·incY]`; increments ≥ 1).
    @inlinable
    public static func axpy(n: Int, alpha: Float, x: UnsafePointer<Float>, incX: Int, y: UnsafeMutablePointer<Float>, incY: Int) {
        guard n > 0 else { return }
        precondition(incX >= 1 && incY >= 1, "axpy: increments must be positive")
        cblas_saxpy(Int32(n), alpha, x, Int32(incX), y, Int32(incY))
    }

    /// Euclidean norm of `n` floats.
    @inlinable
    public static func nrm2(n: Int, x: UnsafePointer<Float>) -> Float {
        n > 0 ? cblas_snrm2(Int32(n), x, 1) : 0
    }

    /// `x *= alpha` over `n` floats.
    @inlinable
    public static func scal(n: Int, alpha: Float, x: UnsafeMutablePointer<Float>) {
        guard n > 0 else { return }
        cblas_sscal(Int32(n), alpha, x, 1)
    }

    /// `C = alpha · op(A) · op(B) + beta · C` in double precision, row-major (as ``gemm``; dense leading dimensions).
    @inlinable
    public static func dgemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Double = 1,
        a: UnsafePointer<Double>, b: UnsafePointer<Double>, beta: Double = 0, c: UnsafeMutablePointer<Double>
    ) {
        guard m > 0, n > 0, k > 0 else { return }
        cblas_dgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(transA ? m : k), b, Int32(transB ? k : n), beta, c, Int32(n))
    }

    /// `x · y` over `n` doubles.
    @inlinable
    public static func ddot(n: Int, x: UnsafePointer<Double>, y: UnsafePointer<Double>) -> Double {
        n > 0 ? cblas_ddot(Int32(n), x, 1, y, 1) : 0
    }

    /// The kernel family OpenBLAS runs (e.g. `SkylakeX`; `Prescott` is its generic SSE3 fallback, which
    /// CTopiaryKernels replaces at load time on CPUs that OpenBLAS does not recognise).
    public static var kernelName: String { openblas_get_corename().map { String(cString: $0) } ?? "unknown" }

    /// Number of threads OpenBLAS uses.
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(newValue)) }
    }
}

/// `A -= x·yᵀ` (rank-one update) on a row-major `rows × cols` block with leading dimension `lda`.
public func cblas_sger_wrapper(
    rows: Int, cols: Int, x: UnsafePointer<Float>, incx: Int, y: UnsafePointer<Float>,
    a: UnsafeMutablePointer<Float>, lda: Int
) {
    guard rows > 0, cols > 0 else { return }
    cblas_sger(CblasRowMajor, Int32(rows), Int32(cols), -1, x, Int32(incx), y, 1, a, Int32(lda))
}
