import CLAPACKE
import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels

/// Optimal Brain Surgeon for whole units of a linear's input: a unit (an MLP channel, a KV-head group's attention
/// outputs) owns a set B of input columns of the linear that reads it (down_proj, o_proj). With H = Σₜ xₜxₜᵀ over the
/// calibration inputs of that linear, removing B and moving the remaining columns to the least-squares best
/// (Hassibi & Stork's update for a block) changes the linear's output on the calibration data by
///
///     ε(B) = tr(W[:, B] · ([H⁻¹]_BB)⁻¹ · W[:, B]ᵀ)        (for one column j: ‖W[:, j]‖² / [H⁻¹]_jj)
///
/// and the update is W ← W − W[:, B]·([H⁻¹]_BB)⁻¹·[H⁻¹]_B,: , after which H⁻¹ drops B the same way. Units are removed
/// greedily, `step` at a time, rescoring the rest after each removal (the structured OBS of ZipLM / SlimGPT).
public enum UnitSurgeon {
    public struct Result {
        /// Removed units, in the order they were removed.
        public var removed: [Int]
        /// Every unit's saliency ε before any removal (higher = more important).
        public var scores: [Double]
        /// The compensated weight (`[rows, n]`, removed columns zero), or nil without the update.
        public var weight: Tensor?
    }

    /// Removes `count` units of `units` (each a list of input columns of `weight`, `[rows, n]`) by least saliency.
    /// `hessian`: `[n, n]`, its upper triangle (row-major) holds Σ x xᵀ up to a scale. `fixed`: remove exactly these
    /// units (one block) instead of choosing. `update`: return the compensated weight.
    public static func remove(
        weight: Tensor, hessian: Tensor, units: [[Int]], count: Int, fixed: [Int]? = nil,
        dampening: Double = 0.01, step: Int = 16, update: Bool = true, name: String = "weight"
    ) throws -> Result {
        let rows = weight.shape[0], n = weight.shape[1]
        precondition(hessian.shape == [n, n], "hessian of \(name) is \(hessian.shape), expected [\(n), \(n)]")
        // Symmetric H in double precision, the weight transposed (`[n, rows]`: a unit's columns are contiguous rows).
        var hinv = [Double](repeating: 0, count: n * n)
        var wt = [Double](repeating: 0, count: n * rows)
        withExtendedLifetime(hessian) {
            let h = hessian.pointer
            for i in 0..<n { for j in i..<n { let v = Double(h[i * n + j]); hinv[i * n + j] = v; hinv[j * n + i] = v } }
        }
        withExtendedLifetime(weight) {
            let w = weight.pointer
            for r in 0..<rows { for j in 0..<n { wt[j * rows + r] = Double(w[r * n + j]) } }
        }
        var meanDiag = 0.0
        for i in 0..<n {
            if hinv[i * n + i] == 0 {  // a column that never sees input: its weights do nothing
                hinv[i * n + i] = 1
                for r in 0..<rows { wt[i * rows + r] = 0 }
            }
            meanDiag += hinv[i * n + i]
        }
        let damp = dampening * meanDiag / Double(n)
        for i in 0..<n { hinv[i * n + i] += damp }
        let lower = CChar(UInt8(ascii: "L"))
        guard LAPACKE_dpotrf(LAPACK_COL_MAJOR, lower, Int32(n), &hinv, Int32(n)) == 0,
            LAPACKE_dpotri(LAPACK_COL_MAJOR, lower, Int32(n), &hinv, Int32(n)) == 0
        else {
            throw PruneError.notApplicable("\(name): the calibration Hessian is not positive definite")
        }
        // dpotri filled the column-major lower triangle = the row-major upper one; mirror it.
        for i in 0..<n { for j in (i + 1)..<n { hinv[j * n + i] = hinv[i * n + j] } }

        func saliency(_ cols: [Int]) throws -> Double {
            if cols.count == 1 {
                let j = cols[0], d = hinv[j * n + j]
                guard d > 0 else { return .infinity }
                return wt.withUnsafeBufferPointer { BLAS.ddot(n: rows, x: $0.baseAddress! + j * rows, y: $0.baseAddress! + j * rows) } / d
            }
            var s = gather(hinv, n: n, rows: cols, columns: cols)
            let w = gather(wt, n: rows, rows: cols, columns: nil)  // Wᵀ[B, :]
            var sw = w
            try solve(&s, &sw, size: cols.count, rhs: rows, name: name)  // S⁻¹·Wᵀ[B, :]
            return sw.withUnsafeBufferPointer { a in
                w.withUnsafeBufferPointer { b in BLAS.ddot(n: a.count, x: a.baseAddress!, y: b.baseAddress!) }
            }
        }

        // Removes the columns R: H⁻¹ ← H⁻¹ − H⁻¹[:, R]·S⁻¹·H⁻¹[R, :] and
        // Wᵀ ← Wᵀ − H⁻¹[:, R]·S⁻¹·Wᵀ[R, :], S = H⁻¹[R, R].
        func removeBlock(_ cols: [Int]) throws {
            let r = cols.count
            let a = gather(hinv, n: n, rows: cols, columns: nil)  // H⁻¹[R, :], `[r, n]`
            var z = a
            var s = gather(hinv, n: n, rows: cols, columns: cols)
            var v = gather(wt, n: rows, rows: cols, columns: nil)  // Wᵀ[R, :], `[r, rows]`
            let factor = s
            try solve(&s, &z, size: r, rhs: n, name: name)
            s = factor
            try solve(&s, &v, size: r, rhs: rows, name: name)
            a.withUnsafeBufferPointer { a in
                z.withUnsafeBufferPointer { z in
                    hinv.withUnsafeMutableBufferPointer { h in
                        BLAS.dgemm(
                            transA: true, m: n, n: n, k: r, alpha: -1, a: a.baseAddress!, b: z.baseAddress!, beta: 1, c: h.baseAddress!)
                    }
                }
                v.withUnsafeBufferPointer { v in
                    wt.withUnsafeMutableBufferPointer { w in
                        BLAS.dgemm(
                            transA: true, m: n, n: rows, k: r, alpha: -1, a: a.baseAddress!, b: v.baseAddress!, beta: 1, c: w.baseAddress!)
                    }
                }
            }
            for j in cols {  // exact zeros where rounding left residue
                for i in 0..<n { hinv[j * n + i] = 0; hinv[i * n + j] = 0 }
                for q in 0..<rows { wt[j * rows + q] = 0 }
            }
        }

        let scores = try units.map(saliency)
        var removed: [Int] = []
        if let fixed {
            guard fixed.allSatisfy({ units.indices.contains($0) }) else {
                throw PruneError.notApplicable("\(name): a fixed unit is out of range")
            }
            if !fixed.isEmpty { try removeBlock(fixed.flatMap { units[$0] }) }
            removed = fixed
        } else {
            guard count >= 0, count < units.count else {
                throw PruneError.notApplicable("\(name): cannot remove \(count) of \(units.count) units")
            }
            var alive = Array(units.indices)
            var current = scores
            while removed.count < count {
                let take = min(max(1, step), count - removed.count)
                let chosen = alive.sorted { current[$0] != current[$1] ? current[$0] < current[$1] : $0 < $1 }.prefix(take)
                try removeBlock(chosen.flatMap { units[$0] })
                removed += chosen
                let gone = Set(chosen)
                alive.removeAll { gone.contains($0) }
                if removed.count < count { for u in alive { current[u] = try saliency(units[u]) } }
            }
        }
        guard update else { return Result(removed: removed, scores: scores, weight: nil) }
        let out = Tensor(uninitialized: [rows, n])
        withExtendedLifetime(out) {
            let o = out.pointer
            for r in 0..<rows { for j in 0..<n { o[r * n + j] = Float(wt[j * rows + r]) } }
        }
        return Result(removed: removed, scores: scores, weight: out)
    }

    /// Rows `rows` (and columns `columns`, or all) of the row-major matrix `m` with `n` columns.
    static func gather(_ m: [Double], n: Int, rows: [Int], columns: [Int]?) -> [Double] {
        var out: [Double] = []
        out.reserveCapacity(rows.count * (columns?.count ?? n))
        for r in rows {
            if let columns { for c in columns { out.append(m[r * n + c]) } } else { out += m[(r * n)..<((r + 1) * n)] }
        }
        return out
    }

    /// `b ← s⁻¹·b` for the symmetric positive-definite `s` (`[size, size]`, overwritten by its factor) and `b` (`[size, rhs]`).
    static func solve(_ s: inout [Double], _ b: inout [Double], size: Int, rhs: Int, name: String) throws {
        let upper = CChar(UInt8(ascii: "U"))
        guard LAPACKE_dpotrf(LAPACK_ROW_MAJOR, upper, Int32(size), &s, Int32(size)) == 0,
            LAPACKE_dpotrs(LAPACK_ROW_MAJOR, upper, Int32(size), Int32(rhs), s, Int32(size), &b, Int32(rhs)) == 0
        else {
            throw PruneError.notApplicable("\(name): the inverse Hessian of the units being removed is not positive definite")
        }
    }
}

/// Topiary's structured pruner `obs`: the decoder is pruned layer by layer; each layer's units are chosen by their
/// OBS saliency (``UnitSurgeon``) on the calibration inputs that reach the layer through the already-pruned layers
/// before it (SparseGPT's sequential order), and the linear reading the units (o_proj for heads, down_proj for MLP
/// channels) is compensated by the OBS update. The per-layer unit counts are the uniform plan's
/// (``StructuredPruner/removalCounts(model:graph:scores:)``), so the result has exactly the parameter count of any
/// other criterion's plan. With `fixed`, another criterion's choice is kept and only compensated (the ablation).
public struct StructuredOBS {
    public var pruner: StructuredPruner
    /// Apply the OBS update to the reading linear (false: only choose by OBS saliency).
    public var compensate = true
    /// Added to H's diagonal, relative to its mean (SparseGPT's 1%).
    public var dampening = 0.01
    /// MLP channels removed per greedy step before the rest are rescored.
    public var step = 16
    public var windowsPerPass = 4
    /// Removals chosen by another criterion, to be compensated instead of choosing.
    public var fixed: [GroupRemoval]?

    public init(pruner: StructuredPruner) { self.pruner = pruner }

    /// Prunes `model` in place and returns the removals (scores: each unit's OBS saliency before the layer was pruned).
    public func run(
        model: DecoderModel, graph: DependencyGraph, calibration set: CalibrationSet, progress: ProgressBar? = nil
    ) throws -> [GroupRemoval] {
        guard model.store == nil else { throw PruneError.notApplicable("obs needs the model in memory (not --stream-layers)") }
        let candidates = StructuredPruner.rankedGroups(graph, layers: pruner.layers)
        var counts: [Int: Int]
        if let fixed {
            counts = [:]
            for r in fixed { counts[r.group] = r.removedUnits.count }
        } else {
            guard pruner.mode == .uniform else { throw PruneError.notApplicable("obs chooses units layer by layer: use --mode uniform") }
            counts = try pruner.removalCounts(model: model, graph: graph)
        }
        let pruned = candidates.filter { (counts[$0.id] ?? 0) > 0 }
        guard let last = pruned.compactMap(\.layer).max() else { progress?.finish(); return [] }
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0) })
        // The linear that reads each group's units: its one input-axis member.
        var readers: [Int: GroupMember] = [:]
        for g in pruned {
            let inputs = g.members.filter { $0.axis == 1 && params[$0.tensor]?.shape.count == 2 }
            guard inputs.count == 1 else {
                throw PruneError.notApplicable("obs needs one linear reading the units of \(g.kind) group \(g.id); it has \(inputs.count)")
            }
            readers[g.id] = inputs[0]
        }
        var driver = Sparsifier(method: .sparsegpt, sparsity: 0)
        driver.windowsPerPass = windowsPerPass
        let chunks = set.chunks(perPass: windowsPerPass)
        var hidden = try chunks.map { try model.embed(Graph(), tokens: $0.tokens) }
        let steps = try chunks.map { try DecoderModel.LayerSteps(model: model, batch: $0.windows, length: set.length) }
        var removals: [GroupRemoval] = []
        for l in 0...last {
            let groups = pruned.filter { $0.layer == l }
            if !groups.isEmpty {
                let names = Set(groups.map { readers[$0.id]!.tensor })
                let stats = try driver.layerStatistics(
                    model: model, layer: l, hidden: hidden, steps: steps, windows: set.windows,
                    outputs: false, only: names
                ).statistics
                var layerRemovals: [GroupRemoval] = []
                for g in groups {
                    let member = readers[g.id]!
                    guard let p = params[member.tensor], let h = stats[member.tensor] else {
                        throw PruneError.calibration("no input statistics were collected for \(member.tensor)")
                    }
                    let result = try UnitSurgeon.remove(
                        weight: p.value, hessian: h, units: (0..<g.units).map(member.channels(ofUnit:)),
                        count: counts[g.id]!, fixed: fixed?.first { $0.group == g.id }?.removedUnits,
                        dampening: dampening, step: step, update: compensate, name: p.name)
                    if let w = result.weight { p.value = w }
                    layerRemovals.append(
                        GroupRemoval(
                            group: g.id, kind: g.kind, layer: l, unitsBefore: g.units,
                            removedUnits: result.removed.sorted(), scores: result.scores))
                }
                try StructuredPruner.apply(layerRemovals, graph: graph, to: model)
                removals += layerRemovals
            }
            if l < last { hidden = try driver.layerOutputs(model: model, layer: l, hidden: hidden, steps: steps) }
            progress?.advance()
        }
        progress?.finish()
        return removals
    }
}
