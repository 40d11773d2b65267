import CTopiaryKernels
import Foundation
import TopiaryCore

/// Dimensions of one scaled-dot-product attention call with grouped-query heads.
public struct AttentionShape: Sendable, Equatable {
    public var batch: Int
    public var queryLength: Int
    public var keyLength: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    /// Multiplies `q·kᵀ` before the softmax (usually `1/√headDim`).
    public var scale: Float
    /// Causal attention: query `i` sees keys `j ≤ i + keyLength − queryLength`.
    public var causal: Bool
    /// Sliding window (0 = none): a query sees at most this many most recent keys.
    public var window: Int

    public init(
        batch: Int, queryLength: Int, keyLength: Int, heads: Int, kvHeads: Int, headDim: Int,
        scale: Float? = nil, causal: Bool = true, window: Int = 0
    ) {
        self.batch = batch
        self.queryLength = queryLength
        self.keyLength = keyLength
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.scale = scale ?? 1 / Float(headDim).squareRoot()
        self.causal = causal
        self.window = window
    }

    var offset: Int { causal ? keyLength - queryLength : keyLength }
    var group: Int { heads / kvHeads }
}

/// cos/sin tables of rotary position embeddings, computed as Hugging Face does in fp32.
public struct RotaryTable: Sendable {
    public let base: Float
    public let rotaryDim: Int
    public let maxPositions: Int
    public let cos: Tensor
    public let sin: Tensor

    public init(base: Float, rotaryDim: Int, maxPositions: Int, frequencyScale: Float = 1) {
        self.base = base
        self.rotaryDim = rotaryDim
        self.maxPositions = maxPositions
        let half = rotaryDim / 2
        let invFreq = (0..<half).map { i in Float(1) / powf(base, Float(2 * i) / Float(rotaryDim)) / frequencyScale }
        cos = Tensor(uninitialized: [maxPositions, half])
        sin = Tensor(uninitialized: [maxPositions, half])
        for p in 0..<maxPositions {
            for i in 0..<half {
                let angle = Float(p) * invFreq[i]
                cos[p * half + i] = Float(Foundation.cos(Double(angle)))
                sin[p * half + i] = Float(Foundation.sin(Double(angle)))
            }
        }
    }
}

/// Keys and values of earlier positions, per layer, for incremental decoding. Layers may differ in
/// their number of KV heads (a pruned model).
public final class KVCache: @unchecked Sendable {
    public let batch: Int
    public let capacity: Int
    public private(set) var keys: [Tensor]
    public private(set) var values: [Tensor]
    /// Number of positions stored (the same for every layer once a forward pass completes).
    public private(set) var lengths: [Int]

    /// - Parameter kvWidths: per layer, `kvHeads · headDim`.
    public init(batch: Int, capacity: Int, kvWidths: [Int]) {
        self.batch = batch
        self.capacity = capacity
        keys = kvWidths.map { Tensor(zeros: [batch, capacity, $0]) }
        values = kvWidths.map { Tensor(zeros: [batch, capacity, $0]) }
        lengths = kvWidths.map { _ in 0 }
    }

    public var length: Int { lengths.first ?? 0 }

    /// Appends `t` new positions of `k`, `v` (`[batch·t, width]`) to `layer`.
    func append(layer: Int, k: Tensor, v: Tensor) throws {
        let width = keys[layer].shape[2]
        let t = k.count / (batch * width)
        guard k.count == batch * t * width, v.count == k.count else {
            throw AutodiffError.shapeMismatch(op: "attention(cache)", shapes: [k.shape, keys[layer].shape])
        }
        guard lengths[layer] + t <= capacity else {
            throw AutodiffError.invalidArgument(
                op: "attention(cache)",
                message: "the KV cache holds \(capacity) positions; \(lengths[layer] + t) needed")
        }
        for b in 0..<batch {
            let dst = b * capacity * width + lengths[layer] * width
            (keys[layer].pointer + dst).update(from: k.pointer + b * t * width, count: t * width)
            (values[layer].pointer + dst).update(from: v.pointer + b * t * width, count: t * width)
        }
        lengths[layer] += t
    }

    /// Forgets everything stored (keeps the memory).
    public func clear() { lengths = lengths.map { _ in 0 } }

    /// A cache of `batch` rows, each starting with a copy of this (single-row) cache's positions, so
    /// that several continuations of one prefix run as one batch.
    public func replicated(batch n: Int, capacity: Int) -> KVCache {
        precondition(batch == 1, "replicated(batch:) copies a single-row cache")
        let out = KVCache(batch: n, capacity: max(capacity, length), kvWidths: keys.map { $0.shape[2] })
        for l in 0..<keys.count {
            let width = keys[l].shape[2], count = lengths[l] * width
            for b in 0..<n {
                (out.keys[l].pointer + b * out.capacity * width).update(from: keys[l].pointer, count: count)
                (out.values[l].pointer + b * out.capacity * width).update(from: values[l].pointer, count: count)
            }
        }
        out.lengths = lengths
        return out
    }

    /// Forgets every position from `length` on (to score several continuations of one shared prefix).
    public func truncate(to length: Int) { lengths = lengths.map { min($0, length) } }
}

extension Graph {
    /// Rotary position embedding (rotate-half layout) of `x` (`[tokens, heads·headDim]`), where
    /// `positions[t]` is the position of row `t`.
    public func rope(_ x: Var, heads: Int, headDim: Int, positions: [Int32], table: RotaryTable) throws -> Var {
        let tokens = positions.count
        guard x.value.count == tokens * heads * headDim, table.rotaryDim <= headDim else {
            throw AutodiffError.shapeMismatch(op: "rope", shapes: [x.shape, [tokens, heads, headDim]])
        }
        if let bad = positions.first(where: { $0 < 0 || Int($0) >= table.maxPositions }) {
            throw AutodiffError.invalidArgument(op: "rope", message: "position \(bad) beyond the table of \(table.maxPositions)")
        }
        let y = Tensor(uninitialized: x.shape)
        let rotate = { (src: Tensor, dst: Tensor, inverse: Int32) in
            Self.rowwise(tokens, width: heads * headDim) { r in
                let o = r.lowerBound * heads * headDim
                positions.withUnsafeBufferPointer {
                    tk_rope(
                        src.pointer + o, dst.pointer + o, r.count, heads, headDim, table.rotaryDim, table.cos.pointer,
                        table.sin.pointer, $0.baseAddress! + r.lowerBound, inverse)
                }
            }
        }
        rotate(x.value, y, 0)
        return record(.rope, [x], output: y, attributes: ["heads": heads, "headDim": headDim]) { dy, _ in
            let dx = Tensor(uninitialized: dy.shape)
            rotate(dy, dx, 1)
            return [dx]
        }
    }

    /// Scaled-dot-product attention with grouped-query heads: query head `h` uses KV head
    /// `h / (heads / kvHeads)`. `q` is `[batch·queryLength, heads·headDim]`, `k` and `v` are
    /// `[batch·keyLength, kvHeads·headDim]`; the result has `q`'s shape.
    public func attention(_ q: Var, _ k: Var, _ v: Var, shape s: AttentionShape) throws -> Var {
        guard s.kvHeads > 0, s.heads % s.kvHeads == 0,
            q.value.count == s.batch * s.queryLength * s.heads * s.headDim,
            k.value.count == s.batch * s.keyLength * s.kvHeads * s.headDim, v.value.count == k.value.count
        else {
            throw AutodiffError.shapeMismatch(op: "attention", shapes: [q.shape, k.shape, v.shape])
        }
        let keep = recording && [q, k, v].contains { $0.node >= 0 && nodes[$0.node].requiresGrad }
        let out = Tensor(uninitialized: q.shape)
        let probs = keep ? Tensor(uninitialized: [s.batch, s.kvHeads, s.queryLength * s.group, s.keyLength]) : nil
        Self.attentionForward(
            q: q.value.pointer, k: k.value.pointer, v: v.value.pointer,
            keyBatchStride: s.keyLength * s.kvHeads * s.headDim, out: out.pointer, probs: probs, s)
        let qv = q.value, kv = k.value, vv = v.value
        return record(
            .attention, [q, k, v], output: out,
            attributes: ["heads": s.heads, "kvHeads": s.kvHeads, "headDim": s.headDim]
        ) { dout, _ in
            guard let probs else { throw AutodiffError.noBackwardRule(op: "attention") }
            return Self.attentionBackward(q: qv, k: kv, v: vv, probs: probs, dout: dout, s)
        }
    }

    /// Attention of new queries over a KV cache: appends `k`, `v` to `cache` at `layer` first.
    /// Inference only (no backward rule).
    public func attention(
        _ q: Var, _ k: Var, _ v: Var, cache: KVCache, layer: Int, heads: Int, kvHeads: Int,
        headDim: Int, scale: Float? = nil, window: Int = 0
    ) throws -> Var {
        if recording, [q, k, v].contains(where: { $0.node >= 0 && nodes[$0.node].requiresGrad }) {
            throw AutodiffError.noBackwardRule(op: "attention with a KV cache")
        }
        try cache.append(layer: layer, k: k.value, v: v.value)
        let t = q.value.count / (cache.batch * heads * headDim)
        let s = AttentionShape(
            batch: cache.batch, queryLength: t, keyLength: cache.lengths[layer], heads: heads,
            kvHeads: kvHeads, headDim: headDim, scale: scale, causal: true, window: window)
        let out = Tensor(uninitialized: q.shape)
        Self.attentionForward(
            q: q.value.pointer, k: cache.keys[layer].pointer, v: cache.values[layer].pointer,
            keyBatchStride: cache.capacity * kvHeads * headDim, out: out.pointer, probs: nil, s)
        return record(
            .attention, [q], output: out, attributes: ["heads": heads, "kvHeads": kvHeads, "headDim": headDim],
            backward: nil)
    }

    /// Query positions per tile: causal attention computes only the keys a tile can see.
    static let queryTile = 64

    /// Copies the `group` query heads that share KV head `g` into a `[T·group, headDim]` matrix
    /// (rows ordered position-major), so that one GEMM serves the whole group.
    @inline(__always)
    static func gatherGroup(_ src: UnsafePointer<Float>, rowStride: Int, rows T: Int, width: Int, into dst: UnsafeMutablePointer<Float>) {
        for t in 0..<T { (dst + t * width).update(from: src + t * rowStride, count: width) }
    }

    @inline(__always)
    static func scatterGroup(_ src: UnsafePointer<Float>, rows T: Int, width: Int, into dst: UnsafeMutablePointer<Float>, rowStride: Int) {
        for t in 0..<T { (dst + t * rowStride).update(from: src + t * width, count: width) }
    }

    /// Forward attention. `probs`, when given, receives the probabilities as `[batch, kvHeads, T·group, S]`.
    static func attentionForward(
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, keyBatchStride: Int,
        out: UnsafeMutablePointer<Float>, probs: Tensor?, _ s: AttentionShape
    ) {
        let T = s.queryLength, S = s.keyLength, hd = s.headDim, G = s.group
        let qld = s.heads * hd, kld = s.kvHeads * hd, width = G * hd, rowsTotal = T * G
        // Each (sequence, KV head) pair is independent: pairs run side by side, each thread with its own scratch.
        let pairs = s.batch * s.kvHeads, workers = Parallel.workers(for: pairs)
        let qs = (0..<workers).map { _ in Tensor(uninitialized: [rowsTotal, hd]) }
        let os = (0..<workers).map { _ in Tensor(uninitialized: [rowsTotal, hd]) }
        let scratch = probs == nil ? (0..<workers).map { _ in Tensor(uninitialized: [rowsTotal, S]) } : []
        defer { withExtendedLifetime((qs, os, scratch, probs)) {} }
        let out = Unchecked(out)
        Parallel.forEach(pairs) { pair, w in
            let b = pair / s.kvHeads, g = pair % s.kvHeads
            let qs = qs[w].pointer, os = os[w].pointer
            gatherGroup(q + b * T * qld + g * width, rowStride: qld, rows: T, width: width, into: qs)
            let kb = k + b * keyBatchStride + g * hd, vb = v + b * keyBatchStride + g * hd
            let p = probs.map { $0.pointer + pair * rowsTotal * S } ?? scratch[w].pointer
            var r0 = 0
            while r0 < T {
                let r1 = min(T, r0 + queryTile)
                let visible = s.causal ? max(0, min(S, r1 + s.offset)) : S
                let R0 = r0 * G, rows = (r1 - r0) * G
                if visible > 0 {
                    BLAS.gemm(
                        transB: true, m: rows, n: visible, k: hd, a: qs + R0 * hd, lda: hd, b: kb, ldb: kld,
                        c: p + R0 * S, ldc: S)
                }
                tk_softmax_masked(p + R0 * S, rows, visible, S, s.scale, s.offset + r0, s.window, G)
                if probs != nil && visible < S {
                    for r in R0..<(R0 + rows) { (p + r * S + visible).update(repeating: 0, count: S - visible) }
                }
                if visible > 0 {
                    BLAS.gemm(m: rows, n: hd, k: visible, a: p + R0 * S, lda: S, b: vb, ldb: kld, c: os + R0 * hd, ldc: hd)
                } else {
                    (os + R0 * hd).update(repeating: 0, count: rows * hd)
                }
                r0 = r1
            }
            scatterGroup(os, rows: T, width: width, into: out.value + b * T * qld + g * width, rowStride: qld)
        }
    }

    static func attentionBackward(
        q: Tensor, k: Tensor, v: Tensor, probs: Tensor, dout: Tensor, _ s: AttentionShape
    )
        -> [Tensor?]
    {
        let T = s.queryLength, S = s.keyLength, hd = s.headDim, G = s.group
        let qld = s.heads * hd, kld = s.kvHeads * hd, width = G * hd, rowsTotal = T * G
        let dq = Tensor(uninitialized: q.shape), dk = Tensor(zeros: k.shape), dv = Tensor(zeros: v.shape)
        // (sequence, KV head) pairs write disjoint rows and columns of dq, dk and dv: they run side by side.
        let pairs = s.batch * s.kvHeads, workers = Parallel.workers(for: pairs)
        let scratch = (0..<workers).map { _ in
            (
                dp: Tensor(uninitialized: [rowsTotal, S]), qs: Tensor(uninitialized: [rowsTotal, hd]),
                dos: Tensor(uninitialized: [rowsTotal, hd]), dqs: Tensor(uninitialized: [rowsTotal, hd])
            )
        }
        defer { withExtendedLifetime((scratch, probs, dout, dq, dk, dv)) {} }
        Parallel.forEach(pairs) { pair, w in
            let b = pair / s.kvHeads, g = pair % s.kvHeads
            let dp = scratch[w].dp.pointer, qs = scratch[w].qs.pointer, dos = scratch[w].dos.pointer, dqs = scratch[w].dqs.pointer
            let p = probs.pointer + pair * rowsTotal * S
            let qOff = b * T * qld + g * width, kOff = b * S * kld + g * hd
            gatherGroup(q.pointer + qOff, rowStride: qld, rows: T, width: width, into: qs)
            gatherGroup(dout.pointer + qOff, rowStride: qld, rows: T, width: width, into: dos)
            // Query tiles as in the forward: with causal attention a tile's probabilities are zero beyond the keys
            // it sees, so each product spans only those keys.
            var r0 = 0
            while r0 < T {
                let r1 = min(T, r0 + queryTile)
                let visible = s.causal ? max(0, min(S, r1 + s.offset)) : S
                let R0 = r0 * G, rows = (r1 - r0) * G
                let pt = p + R0 * S, dpt = dp + R0 * S
                if visible > 0 {
                    // dV += Pᵀ·dO ;  dP = dO·Vᵀ ;  dS = softmax'(dP)
                    BLAS.gemm(
                        transA: true, m: visible, n: hd, k: rows, a: pt, lda: S, b: dos + R0 * hd, ldb: hd, beta: 1,
                        c: dv.pointer + kOff, ldc: kld)
                    BLAS.gemm(
                        transB: true, m: rows, n: visible, k: hd, a: dos + R0 * hd, lda: hd, b: v.pointer + kOff, ldb: kld,
                        c: dpt, ldc: S)
                    tk_softmax_bwd(pt, dpt, rows, visible, S)
                    // dQ = scale·dS·K ;  dK += scale·dSᵀ·Q
                    BLAS.gemm(
                        m: rows, n: hd, k: visible, alpha: s.scale, a: dpt, lda: S, b: k.pointer + kOff, ldb: kld,
                        c: dqs + R0 * hd, ldc: hd)
                    BLAS.gemm(
                        transA: true, m: visible, n: hd, k: rows, alpha: s.scale, a: dpt, lda: S, b: qs + R0 * hd, ldb: hd,
                        beta: 1, c: dk.pointer + kOff, ldc: kld)
                } else {
                    (dqs + R0 * hd).update(repeating: 0, count: rows * hd)
                }
                r0 = r1
            }
            scatterGroup(dqs, rows: T, width: width, into: dq.pointer + qOff, rowStride: qld)
        }
        return [dq, dk, dv]
    }
}
