import CTopiaryKernels
import Foundation
import TopiaryCore

/// Differentiable operations. Every op computes its result eagerly; when the graph records, it also
/// keeps what its backward rule needs.
extension Graph {
    // MARK: Linear algebra

    /// `y = x · Wᵀ` for `x` of shape `[…, in]` and `W` of shape `[out, in]` (PyTorch's `nn.Linear` layout).
    public func linear(_ x: Var, _ w: Var) throws -> Var {
        guard w.shape.count == 2, let inDim = x.shape.last, inDim == w.shape[1] else {
            throw AutodiffError.shapeMismatch(op: "linear", shapes: [x.shape, w.shape])
        }
        let outDim = w.shape[0], rows = x.value.count / max(inDim, 1)
        let y = Tensor(uninitialized: Array(x.shape.dropLast()) + [outDim])
        BLAS.gemm(transB: true, m: rows, n: outDim, k: inDim, a: x.value.pointer, b: w.value.pointer, c: y.pointer)
        let xv = x.value, wv = w.value
        return record(.linear, [x, w], parameter: nil, output: y, attributes: ["in": inDim, "out": outDim]) { dy, needs in
            var dx: Tensor?, dw: Tensor?
            if needs[0] {
                let t = Tensor(uninitialized: xv.shape)
                BLAS.gemm(m: rows, n: inDim, k: outDim, a: dy.pointer, b: wv.pointer, c: t.pointer)
                dx = t
            }
            if needs[1] {
                let t = Tensor(uninitialized: wv.shape)
                BLAS.gemm(transA: true, m: outDim, n: inDim, k: rows, a: dy.pointer, b: xv.pointer, c: t.pointer)
                dw = t
            }
            return [dx, dw]
        }
    }

    /// Batched `C = A · B` (or with `transB`, `A · Bᵀ`) over the leading axes of rank-3 tensors.
    public func matmul(_ a: Var, _ b: Var, transB: Bool = false) throws -> Var {
        guard a.shape.count == 3, b.shape.count == 3, a.shape[0] == b.shape[0] else {
            throw AutodiffError.shapeMismatch(op: "matmul", shapes: [a.shape, b.shape])
        }
        let batch = a.shape[0], m = a.shape[1], k = a.shape[2]
        let (kb, n) = transB ? (b.shape[2], b.shape[1]) : (b.shape[1], b.shape[2])
        guard kb == k else { throw AutodiffError.shapeMismatch(op: "matmul", shapes: [a.shape, b.shape]) }
        let c = Tensor(uninitialized: [batch, m, n])
        for i in 0..<batch {
            BLAS.gemm(
                transB: transB, m: m, n: n, k: k, a: a.value.pointer + i * m * k, b: b.value.pointer + i * k * n,
                c: c.pointer + i * m * n)
        }
        let av = a.value, bv = b.value
        return record(.matmul, [a, b], output: c, attributes: ["transB": transB ? 1 : 0]) { dc, needs in
            var da: Tensor?, db: Tensor?
            if needs[0] {
                let t = Tensor(uninitialized: av.shape)
                for i in 0..<batch {  // dA = dC · op(B)ᵀ
                    BLAS.gemm(
                        transB: !transB, m: m, n: k, k: n, a: dc.pointer + i * m * n, b: bv.pointer + i * k * n,
                        c: t.pointer + i * m * k)
                }
                da = t
            }
            if needs[1] {
                let t = Tensor(uninitialized: bv.shape)
                for i in 0..<batch {
                    if transB {  // B is [n, k]: dB = dCᵀ · A
                        BLAS.gemm(
                            transA: true, m: n, n: k, k: m, a: dc.pointer + i * m * n, b: av.pointer + i * m * k,
                            c: t.pointer + i * k * n)
                    } else {  // B is [k, n]: dB = Aᵀ · dC
                        BLAS.gemm(
                            transA: true, m: k, n: n, k: m, a: av.pointer + i * m * k, b: dc.pointer + i * m * n,
                            c: t.pointer + i * k * n)
                    }
                }
                db = t
            }
            return [da, db]
        }
    }

    /// Rows of `table` (`[vocab, dim]`) picked by `ids`; the backward pass scatter-adds.
    public func embedding(_ table: Var, ids: [Int32]) throws -> Var {
        guard table.shape.count == 2 else { throw AutodiffError.shapeMismatch(op: "embedding", shapes: [table.shape]) }
        let vocab = table.shape[0], dim = table.shape[1]
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw AutodiffError.invalidArgument(op: "embedding", message: "token id \(bad) outside the vocabulary of \(vocab)")
        }
        let y = Tensor(uninitialized: [ids.count, dim])
        for (r, id) in ids.enumerated() {
            (y.pointer + r * dim).update(from: table.value.pointer + Int(id) * dim, count: dim)
        }
        return record(.embedding, [table], output: y, attributes: ["vocab": vocab, "dim": dim]) { dy, _ in
            let dt = Tensor(zeros: [vocab, dim])
            for (r, id) in ids.enumerated() {
                tk_add_inplace(dt.pointer + Int(id) * dim, dy.pointer + r * dim, dim)
            }
            return [dt]
        }
    }

    /// Rows of a table that is not in memory (a streamed model's embedding, gathered row by row from its file),
    /// recorded as an embedding of `table` so that a trace sees the same operation. No gradient reaches the table.
    public func embedding(rows: Tensor, of table: Parameter, ids: [Int32]) throws -> Var {
        guard table.shape.count == 2, rows.shape == [ids.count, table.shape[1]] else {
            throw AutodiffError.shapeMismatch(op: "embedding", shapes: [table.shape, rows.shape])
        }
        return record(.embedding, [parameter(table)], output: rows, attributes: ["vocab": table.shape[0], "dim": table.shape[1]]) { _, _ in
            throw AutodiffError.invalidArgument(
                op: "embedding", message: "\(table.name) is streamed from its file and takes no gradient (freeze it)")
        }
    }

    // MARK: Normalisation and activations

    /// RMSNorm over the last axis: `x / rms(x) · (w + weightOffset)`.
    public func rmsNorm(_ x: Var, _ w: Var, eps: Float, weightOffset: Float = 0) throws -> Var {
        guard let dim = x.shape.last, w.shape == [dim] else {
            throw AutodiffError.shapeMismatch(op: "rmsnorm", shapes: [x.shape, w.shape])
        }
        let rows = x.value.count / max(dim, 1)
        let y = Tensor(uninitialized: x.shape)
        let rstd = Tensor(uninitialized: [rows])
        let xv = x.value, wv = w.value
        Self.rowwise(rows, width: dim) { r in
            let o = r.lowerBound * dim
            tk_rmsnorm_fwd(xv.pointer + o, wv.pointer, y.pointer + o, rstd.pointer + r.lowerBound, r.count, dim, eps, weightOffset)
        }
        return record(.rmsnorm, [x, w], output: y, attributes: ["dim": dim]) { dy, needs in
            let dx = needs[0] ? Tensor(uninitialized: xv.shape) : nil
            // ∂w sums over rows: each thread sums its rows, then the partial sums are added in order.
            let partials = needs[1] ? (0..<Parallel.rangeCount(rows, minimum: Self.rowMinimum(dim))).map { _ in Tensor(zeros: [dim]) } : []
            Self.rowwise(rows, width: dim) { r, w in
                let o = r.lowerBound * dim
                tk_rmsnorm_bwd(
                    xv.pointer + o, wv.pointer, rstd.pointer + r.lowerBound, dy.pointer + o, dx.map { $0.pointer + o },
                    partials.isEmpty ? nil : partials[w].pointer, r.count, dim, weightOffset)
            }
            var dw = partials.first
            for p in partials.dropFirst() { tk_add_inplace(dw!.pointer, p.pointer, dim) }
            return [dx, dw]
        }
    }

    /// RMSNorm of each group of `groupSize` consecutive channels of the last axis, with one weight of
    /// `groupSize` shared by every group: Gemma 3's per-head query/key norm (`x` is `[tokens, heads·headDim]`,
    /// `w` is `[headDim]`). With `groupSize` equal to the last axis it is ``rmsNorm(_:_:eps:weightOffset:)``.
    public func groupedRMSNorm(_ x: Var, _ w: Var, groupSize: Int, eps: Float) throws -> Var {
        guard let last = x.shape.last, groupSize > 0, last % groupSize == 0, w.shape == [groupSize] else {
            throw AutodiffError.shapeMismatch(op: "groupedRMSNorm", shapes: [x.shape, w.shape, [groupSize]])
        }
        let rows = x.value.count / groupSize
        let y = Tensor(uninitialized: x.shape)
        let rstd = Tensor(uninitialized: [rows])
        tk_rmsnorm_fwd(x.value.pointer, w.value.pointer, y.pointer, rstd.pointer, rows, groupSize, eps, 0)
        let xv = x.value, wv = w.value
        return record(.groupedRMSNorm, [x, w], output: y, attributes: ["dim": last, "groupSize": groupSize]) { dy, needs in
            let dx = needs[0] ? Tensor(uninitialized: xv.shape) : nil
            let dw = needs[1] ? Tensor(zeros: [groupSize]) : nil
            tk_rmsnorm_bwd(xv.pointer, wv.pointer, rstd.pointer, dy.pointer, dx?.pointer, dw?.pointer, rows, groupSize, 0)
            return [dx, dw]
        }
    }

    /// LayerNorm over the last axis: `(x − mean) / √(var + eps) · w + b` (biased variance, as PyTorch).
    public func layerNorm(_ x: Var, _ w: Var, _ b: Var, eps: Float) throws -> Var {
        guard let dim = x.shape.last, w.shape == [dim], b.shape == [dim] else {
            throw AutodiffError.shapeMismatch(op: "layernorm", shapes: [x.shape, w.shape, b.shape])
        }
        let rows = x.value.count / max(dim, 1)
        let xhat = Tensor(uninitialized: x.shape), y = Tensor(uninitialized: x.shape)
        var rstd = [Float](repeating: 0, count: rows)
        for r in 0..<rows {
            let xr = x.value.pointer + r * dim
            let mean = Float(tk_sum_d(xr, dim) / Double(dim))
            var v = 0.0
            for i in 0..<dim { let d = Double(xr[i] - mean); v += d * d }
            let inv = 1 / (Float(v / Double(dim)) + eps).squareRoot()
            rstd[r] = inv
            for i in 0..<dim { xhat[r * dim + i] = (xr[i] - mean) * inv }
        }
        for r in 0..<rows {
            let o = r * dim
            tk_mul(xhat.pointer + o, w.value.pointer, y.pointer + o, dim)
            tk_add_inplace(y.pointer + o, b.value.pointer, dim)
        }
        let wv = w.value
        return record(.layernorm, [x, w, b], output: y, attributes: ["dim": dim]) { dy, needs in
            var dx: Tensor?, dw: Tensor?, db: Tensor?
            if needs[1] {
                let t = Tensor(zeros: [dim]);
                for r in 0..<rows { tk_mul_acc(dy.pointer + r * dim, xhat.pointer + r * dim, t.pointer, dim) }; dw = t
            }
            if needs[2] { let t = Tensor(zeros: [dim]); for r in 0..<rows { tk_add_inplace(t.pointer, dy.pointer + r * dim, dim) }; db = t }
            if needs[0] {
                // dx = rstd · (g − mean(g) − x̂ · mean(g · x̂)), g = dy · w
                let t = Tensor(uninitialized: dy.shape)
                let g = Tensor(uninitialized: [dim])
                for r in 0..<rows {
                    let o = r * dim
                    tk_mul(dy.pointer + o, wv.pointer, g.pointer, dim)
                    let mg = Float(tk_sum_d(g.pointer, dim) / Double(dim))
                    let mgx = Float(tk_dot_d(g.pointer, xhat.pointer + o, dim) / Double(dim))
                    for i in 0..<dim { t[o + i] = rstd[r] * (g[i] - mg - xhat[o + i] * mgx) }
                }
                dx = t
            }
            return [dx, dw, db]
        }
    }

    /// `x + b` with `b` (`[dim]`) added to every row of `x` (`[…, dim]`): a linear layer's bias.
    public func addBias(_ x: Var, _ b: Var) throws -> Var {
        guard let dim = x.shape.last, b.shape == [dim] else {
            throw AutodiffError.shapeMismatch(op: "addBias", shapes: [x.shape, b.shape])
        }
        let rows = x.value.count / max(dim, 1)
        let y = x.value.copy()
        for r in 0..<rows { tk_add_inplace(y.pointer + r * dim, b.value.pointer, dim) }
        return record(.addBias, [x, b], output: y) { dy, needs in
            var db: Tensor?
            if needs[1] { let t = Tensor(zeros: [dim]); for r in 0..<rows { tk_add_inplace(t.pointer, dy.pointer + r * dim, dim) }; db = t }
            return [needs[0] ? dy : nil, db]
        }
    }

    public func silu(_ x: Var) -> Var {
        unary(.silu, x, forward: tk_silu_fwd, backward: tk_silu_bwd)
    }

    /// GELU with the tanh approximation (`gelu_pytorch_tanh`).
    public func geluTanh(_ x: Var) -> Var {
        unary(.geluTanh, x, forward: tk_gelu_tanh_fwd, backward: tk_gelu_tanh_bwd)
    }

    /// Exact GELU, `x·Φ(x)`.
    public func geluErf(_ x: Var) -> Var {
        unary(.geluErf, x, forward: tk_gelu_erf_fwd, backward: tk_gelu_erf_bwd)
    }

    private func unary(
        _ kind: OpKind, _ x: Var,
        forward: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void,
        backward: @escaping (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void
    ) -> Var {
        let y = Tensor(uninitialized: x.shape)
        let xv = x.value
        Self.elementwise(xv.count) { r in forward(xv.pointer + r.lowerBound, y.pointer + r.lowerBound, r.count) }
        return record(kind, [x], output: y) { dy, _ in
            let dx = Tensor(uninitialized: xv.shape)
            Self.elementwise(xv.count) { r in
                backward(xv.pointer + r.lowerBound, dy.pointer + r.lowerBound, dx.pointer + r.lowerBound, r.count)
            }
            return [dx]
        }
    }

    /// Softmax over the last axis.
    public func softmax(_ x: Var) -> Var {
        let cols = x.shape.last ?? 1, rows = x.value.count / max(cols, 1)
        let y = x.value.copy()
        tk_softmax_masked(y.pointer, rows, cols, cols, 1, cols, 0, 1)
        return record(.softmax, [x], output: y) { dy, _ in
            let dx = dy.copy()
            tk_softmax_bwd(y.pointer, dx.pointer, rows, cols, cols)
            return [dx]
        }
    }

    // MARK: Element-wise

    /// Inverted dropout: zeroes each element with probability `p` and scales the rest by 1/(1−p), in
    /// training mode only (identity otherwise). Masks come from the graph's seed, so a run is reproducible.
    public func dropout(_ x: Var, _ p: Float) throws -> Var {
        guard training, p > 0 else { return x }
        guard p < 1 else { throw AutodiffError.invalidArgument(op: "dropout", message: "probability \(p) must be below 1") }
        dropoutCalls += 1
        // SplitMix64 seeded per call (the C kernel draws the same sequence as TopiaryCore.SplitMix64).
        let mask = Tensor(uninitialized: x.shape)
        tk_dropout_mask(mask.pointer, mask.count, dropoutSeed &+ dropoutCalls &* 0x9E37_79B9_7F4A_7C15, Double(p), 1 / (1 - p))
        let y = Tensor(uninitialized: x.shape)
        tk_mul(x.value.pointer, mask.pointer, y.pointer, y.count)
        return record(.dropout, [x], output: y) { dy, _ in
            let dx = Tensor(uninitialized: dy.shape)
            tk_mul(dy.pointer, mask.pointer, dx.pointer, dx.count)
            return [dx]
        }
    }

    /// Variational-dropout gate (multiplicative Gaussian noise per unit): `x[…, j] · (1 + exp(½·logα[u])·ε[…, j])` with
    /// `u = unitOfColumn[j]`, one log α per unit (`logAlpha`, `[units]`) and the caller's standard-normal `noise`
    /// (`x`'s shape, fixed for this call so the backward rule sees the same sample).
    public func gaussianGate(_ x: Var, logAlpha: Var, noise: Tensor, unitOfColumn: [Int32]) throws -> Var {
        let cols = x.shape.last ?? 0, rows = cols > 0 ? x.value.count / cols : 0
        guard noise.shape == x.shape else { throw AutodiffError.shapeMismatch(op: "gaussianGate", shapes: [x.shape, noise.shape]) }
        guard logAlpha.shape.count == 1, unitOfColumn.count == cols, unitOfColumn.allSatisfy({ $0 >= 0 && Int($0) < logAlpha.value.count })
        else {
            throw AutodiffError.invalidArgument(
                op: "gaussianGate", message: "unitOfColumn needs one unit in 0..<\(logAlpha.value.count) for each of the \(cols) columns")
        }
        let xv = x.value, a = logAlpha.value
        let y = Tensor(uninitialized: x.shape)
        tk_gauss_gate(xv.pointer, noise.pointer, a.pointer, unitOfColumn, rows, cols, y.pointer)
        return record(.gaussianGate, [x, logAlpha], output: y) { dy, needs in
            let dx = needs[0] ? Tensor(uninitialized: xv.shape) : nil
            let da = needs[1] ? Tensor(zeros: a.shape) : nil
            tk_gauss_gate_backward(dy.pointer, xv.pointer, noise.pointer, a.pointer, unitOfColumn, rows, cols, dx?.pointer, da?.pointer)
            withExtendedLifetime(noise) {}
            return [dx, da]
        }
    }

    public func add(_ a: Var, _ b: Var) throws -> Var {
        guard a.shape == b.shape else { throw AutodiffError.shapeMismatch(op: "add", shapes: [a.shape, b.shape]) }
        let y = Tensor(uninitialized: a.shape)
        let av = a.value, bv = b.value
        Self.elementwise(y.count) { r in tk_add(av.pointer + r.lowerBound, bv.pointer + r.lowerBound, y.pointer + r.lowerBound, r.count) }
        return record(.add, [a, b], output: y) { dy, _ in [dy, dy] }
    }

    public func mul(_ a: Var, _ b: Var) throws -> Var {
        guard a.shape == b.shape else { throw AutodiffError.shapeMismatch(op: "mul", shapes: [a.shape, b.shape]) }
        let y = Tensor(uninitialized: a.shape)
        Self.multiply(a.value, b.value, into: y)
        let av = a.value, bv = b.value
        return record(.mul, [a, b], output: y) { dy, needs in
            var da: Tensor?, db: Tensor?
            if needs[0] { let t = Tensor(uninitialized: av.shape); Self.multiply(dy, bv, into: t); da = t }
            if needs[1] { let t = Tensor(uninitialized: bv.shape); Self.multiply(dy, av, into: t); db = t }
            return [da, db]
        }
    }

    /// `x · s` for a constant `s`.
    public func scale(_ x: Var, _ s: Float) -> Var {
        let y = Tensor(uninitialized: x.shape)
        tk_scale(x.value.pointer, s, y.pointer, y.count)
        return record(.scale, [x], output: y) { dy, _ in
            let dx = Tensor(uninitialized: dy.shape)
            tk_scale(dy.pointer, s, dx.pointer, dx.count)
            return [dx]
        }
    }

    // MARK: Shape

    /// Same data, another shape (no copy).
    public func reshape(_ x: Var, _ shape: [Int]) throws -> Var {
        guard shape.reduce(1, *) == x.value.count else {
            throw AutodiffError.shapeMismatch(op: "reshape", shapes: [x.shape, shape])
        }
        let inShape = x.shape
        return record(.reshape, [x], output: x.value.reshaped(shape)) { dy, _ in [dy.reshaped(inShape)] }
    }

    /// Swaps axes `a` and `b`.
    public func transpose(_ x: Var, _ a: Int, _ b: Int) throws -> Var {
        guard a >= 0, b >= 0, a < x.shape.count, b < x.shape.count else {
            throw AutodiffError.invalidArgument(op: "transpose", message: "axes \(a), \(b) out of range for \(x.shape)")
        }
        var perm = Array(0..<x.shape.count)
        perm.swapAt(a, b)
        let y = Self.permute(x.value, perm)
        return record(.transpose, [x], output: y, attributes: ["axis0": a, "axis1": b]) { dy, _ in
            [Self.permute(dy, perm)]  // a swap is its own inverse
        }
    }

    /// Elements `range` along `axis`.
    public func slice(_ x: Var, axis: Int, _ range: Range<Int>) throws -> Var {
        guard axis >= 0, axis < x.shape.count, range.lowerBound >= 0, range.upperBound <= x.shape[axis] else {
            throw AutodiffError.invalidArgument(op: "slice", message: "range \(range) on axis \(axis) out of \(x.shape)")
        }
        let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
        let n = x.shape[axis], m = range.count
        var shape = x.shape
        shape[axis] = m
        let y = Tensor(uninitialized: shape)
        for o in 0..<outer {
            (y.pointer + o * m * inner).update(from: x.value.pointer + (o * n + range.lowerBound) * inner, count: m * inner)
        }
        let inShape = x.shape
        return record(.slice, [x], output: y, attributes: ["axis": axis, "start": range.lowerBound, "end": range.upperBound]) { dy, _ in
            let dx = Tensor(zeros: inShape)
            for o in 0..<outer {
                (dx.pointer + (o * n + range.lowerBound) * inner).update(from: dy.pointer + o * m * inner, count: m * inner)
            }
            return [dx]
        }
    }

    /// Concatenation along `axis`.
    public func concat(_ xs: [Var], axis: Int) throws -> Var {
        guard let first = xs.first, axis >= 0, axis < first.shape.count else {
            throw AutodiffError.invalidArgument(op: "concat", message: "nothing to concatenate or bad axis \(axis)")
        }
        for x in xs
        where x.shape.count != first.shape.count
            || zip(x.shape, first.shape).enumerated().contains(where: { $0.offset != axis && $0.element.0 != $0.element.1 })
        {
            throw AutodiffError.shapeMismatch(op: "concat", shapes: xs.map(\.shape))
        }
        let outer = first.shape[..<axis].reduce(1, *), inner = first.shape[(axis + 1)...].reduce(1, *)
        let sizes = xs.map { $0.shape[axis] }, total = sizes.reduce(0, +)
        var shape = first.shape
        shape[axis] = total
        let y = Tensor(uninitialized: shape)
        var start = 0
        for (x, m) in zip(xs, sizes) {
            for o in 0..<outer {
                (y.pointer + (o * total + start) * inner).update(from: x.value.pointer + o * m * inner, count: m * inner)
            }
            start += m
        }
        let shapes = xs.map(\.shape)
        return record(.concat, xs, output: y, attributes: ["axis": axis]) { dy, needs in
            var out: [Tensor?] = []
            var start = 0
            for (k, m) in sizes.enumerated() {
                defer { start += m }
                guard needs[k] else { out.append(nil); continue }
                let dx = Tensor(uninitialized: shapes[k])
                for o in 0..<outer {
                    (dx.pointer + o * m * inner).update(from: dy.pointer + (o * total + start) * inner, count: m * inner)
                }
                out.append(dx)
            }
            return out
        }
    }

    /// Generic axis permutation (`y.shape[i] = x.shape[perm[i]]`), used by transpose.
    static func permute(_ x: Tensor, _ perm: [Int]) -> Tensor {
        let inShape = x.shape, rank = inShape.count
        let outShape = perm.map { inShape[$0] }
        var inStrides = [Int](repeating: 1, count: rank)
        for i in stride(from: rank - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * inShape[i + 1] }
        let strides = perm.map { inStrides[$0] }
        let y = Tensor(uninitialized: outShape)
        guard y.count > 0 else { return y }
        // Copy rows of the last output axis; the inner loop is a strided gather.
        let last = outShape[rank - 1], lastStride = strides[rank - 1]
        let rows = y.count / last
        var index = [Int](repeating: 0, count: rank)
        let src = x.pointer, dst = y.pointer
        for r in 0..<rows {
            var base = 0
            for i in 0..<(rank - 1) { base += index[i] * strides[i] }
            let d = dst + r * last
            for j in 0..<last { d[j] = src[base + j * lastStride] }
            var axis = rank - 2
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < outShape[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
        return y
    }

    // MARK: Losses and reductions

    /// Mean cross-entropy of `logits` (`[rows, vocab]`) against `targets`; rows whose target equals
    /// `ignoreIndex` do not count (Hugging Face's causal-LM loss uses -100).
    public func crossEntropy(_ logits: Var, targets: [Int32], ignoreIndex: Int32 = -100) throws -> Var {
        guard logits.shape.count >= 2, let vocab = logits.shape.last, logits.value.count / vocab == targets.count else {
            throw AutodiffError.shapeMismatch(op: "crossEntropy", shapes: [logits.shape, [targets.count]])
        }
        let t = targets.map { $0 == ignoreIndex ? -1 : $0 }
        if let bad = t.first(where: { $0 >= Int32(vocab) }) {
            throw AutodiffError.invalidArgument(op: "crossEntropy", message: "target \(bad) outside the vocabulary of \(vocab)")
        }
        var nll = [Double](repeating: 0, count: t.count)
        let lv = logits.value
        let counts = Locked(0)
        nll.withUnsafeMutableBufferPointer { nll in
            let nll = Unchecked(nll.baseAddress!)
            Self.rowwise(t.count, width: vocab) { r in
                let n = t.withUnsafeBufferPointer {
                    tk_nll_rows(lv.pointer + r.lowerBound * vocab, r.count, vocab, $0.baseAddress! + r.lowerBound, nll.value + r.lowerBound)
                }
                counts.update { $0 += n }
            }
        }
        let counted = counts.value
        guard counted > 0 else {
            throw AutodiffError.invalidArgument(op: "crossEntropy", message: "every target is ignored")
        }
        let loss = Tensor(shape: [1], values: [Float(nll.reduce(0, +) / Double(counted))])
        return record(.crossEntropy, [logits], output: loss, attributes: ["vocab": vocab]) { dy, _ in
            let dl = Tensor(uninitialized: lv.shape)
            let scale = dy[0] / Float(counted)
            Self.rowwise(t.count, width: vocab) { r in
                let o = r.lowerBound * vocab
                t.withUnsafeBufferPointer {
                    tk_cross_entropy_bwd(lv.pointer + o, r.count, vocab, $0.baseAddress! + r.lowerBound, scale, dl.pointer + o)
                }
            }
            return [dl]
        }
    }

    /// Elements per thread below which element-wise kernels stay on one thread.
    static let elementMinimum = 1 << 15

    static func rowMinimum(_ width: Int) -> Int { max(1, elementMinimum / max(width, 1)) }

    /// Runs an element-wise kernel over `0..<count` split across threads (``Parallel/ranges(_:minimum:_:)``).
    static func elementwise(_ count: Int, _ body: (Range<Int>) -> Void) {
        Parallel.ranges(count, minimum: elementMinimum) { r, _ in body(r) }
    }

    /// Runs a row-wise kernel over `rows` rows of `width` elements split across threads.
    static func rowwise(_ rows: Int, width: Int, _ body: (Range<Int>) -> Void) {
        Parallel.ranges(rows, minimum: rowMinimum(width)) { r, _ in body(r) }
    }

    static func rowwise(_ rows: Int, width: Int, _ body: (Range<Int>, Int) -> Void) {
        Parallel.ranges(rows, minimum: rowMinimum(width), body)
    }

    static func multiply(_ a: Tensor, _ b: Tensor, into y: Tensor) {
        elementwise(y.count) { r in tk_mul(a.pointer + r.lowerBound, b.pointer + r.lowerBound, y.pointer + r.lowerBound, r.count) }
    }

    /// Sum of all elements.
    public func sum(_ x: Var) -> Var {
        let y = Tensor(shape: [1], values: [Float(tk_sum_d(x.value.pointer, x.value.count))])
        let shape = x.shape
        return record(.sum, [x], output: y) { dy, _ in [Tensor(shape: shape, repeating: dy[0])] }
    }

    /// `Σ x ⊙ w` for a constant `w` of the same shape (a random projection, used by gradient checks).
    public func weightedSum(_ x: Var, _ w: Tensor) throws -> Var {
        guard w.count == x.value.count else { throw AutodiffError.shapeMismatch(op: "weightedSum", shapes: [x.shape, w.shape]) }
        let y = Tensor(shape: [1], values: [Float(tk_dot_d(x.value.pointer, w.pointer, w.count))])
        let shape = x.shape
        return record(.weightedSum, [x], output: y) { dy, _ in
            let dx = Tensor(uninitialized: shape)
            tk_scale(w.pointer, dy[0], dx.pointer, dx.count)
            return [dx]
        }
    }
}
