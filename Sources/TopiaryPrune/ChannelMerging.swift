import CTopiaryKernels
import Foundation
import TopiaryCore
import TopiaryGraph
import TopiaryModels

/// K-means clustering pruning: instead of removing the least important MLP channels of a layer, its channels are
/// clustered by their input weights (each channel's gate and up rows, concatenated) into as many clusters as channels
/// are kept, and each cluster becomes one channel: its gate and up rows are the cluster's centroid, its down-projection
/// column the sum of the members' columns (the members' outputs, which are alike when their inputs are, add up).
/// A structural method that keeps the layer's output close instead of dropping what is cheap to drop.
public enum ChannelMerging {
    /// Lloyd's k-means on the rows of `points` (`[n, dim]`): `clusters` centres started at distinct random points
    /// (seeded), squared Euclidean distances by one GEMM per iteration, an empty cluster restarted at the point farthest
    /// from its centre. Returns each point's cluster in `0..<clusters`.
    public static func kmeans(_ points: Tensor, clusters k: Int, iterations: Int = 15, seed: UInt64 = 0) -> [Int] {
        let n = points.shape[0], dim = points.shape[1]
        precondition(k >= 1 && k <= n, "k-means: \(k) clusters for \(n) points")
        var rng = SplitMix64(seed: seed)
        var order = Array(0..<n)
        for i in stride(from: n - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        let centres = Tensor(uninitialized: [k, dim])
        for (c, p) in order.prefix(k).enumerated() { (centres.pointer + c * dim).update(from: points.pointer + p * dim, count: dim) }
        let pointNorms = (0..<n).map { BLAS.nrm2(n: dim, x: points.pointer + $0 * dim) }.map { $0 * $0 }
        var assignment = [Int32](repeating: -1, count: n)
        let distances = Tensor(uninitialized: [n, k])
        for _ in 0..<iterations {
            // ‖p − c‖² = ‖p‖² − 2 p·c + ‖c‖²; ‖p‖² does not change the argmin.
            BLAS.gemm(transB: true, m: n, n: k, k: dim, alpha: -2, a: points.pointer, b: centres.pointer, c: distances.pointer)
            let centreNorms = (0..<k).map { c -> Float in
                let v = BLAS.nrm2(n: dim, x: centres.pointer + c * dim); return v * v
            }
            tk_add_row_vector(distances.pointer, n, k, centreNorms)
            var next = [Int32](repeating: 0, count: n)
            tk_argmin_rows(distances.pointer, n, k, &next)
            let changed = next != assignment
            assignment = next
            // New centres: member means; an empty cluster takes the point farthest from its own centre.
            centres.pointer.update(repeating: 0, count: k * dim)
            var counts = [Int](repeating: 0, count: k)
            for p in 0..<n {
                counts[Int(assignment[p])] += 1
                BLAS.axpy(n: dim, alpha: 1, x: points.pointer + p * dim, y: centres.pointer + Int(assignment[p]) * dim)
            }
            var taken = Set<Int>()
            for c in 0..<k {
                if counts[c] > 0 { BLAS.scal(n: dim, alpha: 1 / Float(counts[c]), x: centres.pointer + c * dim); continue }
                let far = (0..<n).filter { !taken.contains($0) && counts[Int(assignment[$0])] > 1 }
                    .max {
                        distances[$0 * k + Int(assignment[$0])] + pointNorms[$0] < distances[$1 * k + Int(assignment[$1])] + pointNorms[$1]
                    }
                guard let far else { continue }
                taken.insert(far)
                counts[Int(assignment[far])] -= 1
                assignment[far] = Int32(c)
                counts[c] = 1
                (centres.pointer + c * dim).update(from: points.pointer + far * dim, count: dim)
            }
            if !changed { break }
        }
        return assignment.map(Int.init)
    }

    /// Replaces the MLP removals of a plan by merges: for each MLP group the plan shrinks (by k units), its channels are
    /// clustered into `units − k` clusters; the weights of each cluster's first member become the merged channel and the
    /// other members are returned as the units to remove (apply the result with ``StructuredPruner/apply(_:graph:to:)``).
    /// Attention removals pass through unchanged. The model's MLP weights are modified in place.
    public static func mergeMLP(
        _ removals: [GroupRemoval], graph: DependencyGraph, model: DecoderModel, seed: UInt64 = 0
    ) throws -> [GroupRemoval] {
        try removals.map { r in
            guard r.kind == "mlp", let l = r.layer else { return r }
            let layer = model.layers[l]
            guard let group = graph.groups.first(where: { $0.id == r.group }),
                Set(group.members.map(\.tensor)) == Set([layer.gate.name, layer.up.name, layer.down.name])
            else {
                throw PruneError.notApplicable("k-means merging needs MLP groups made of gate, up and down (group \(r.group))")
            }
            let f = layer.gate.shape[0], d = layer.gate.shape[1]
            let points = Tensor(uninitialized: [f, 2 * d])
            for c in 0..<f {
                (points.pointer + c * 2 * d).update(from: layer.gate.value.pointer + c * d, count: d)
                (points.pointer + c * 2 * d + d).update(from: layer.up.value.pointer + c * d, count: d)
            }
            let kept = f - r.removedUnits.count
            let cluster = kmeans(points, clusters: kept, seed: seed &+ UInt64(l))
            var members = [[Int]](repeating: [], count: kept)
            for (c, k) in cluster.enumerated() { members[k].append(c) }
            let gate = layer.gate.value.copy(), up = layer.up.value.copy(), down = layer.down.value.copy()
            var removed: [Int] = []
            for m in members where m.count > 1 {
                let rep = m[0], scale = 1 / Float(m.count)
                (gate.pointer + rep * d).update(repeating: 0, count: d)
                (up.pointer + rep * d).update(repeating: 0, count: d)
                for c in m {
                    BLAS.axpy(n: d, alpha: scale, x: layer.gate.value.pointer + c * d, y: gate.pointer + rep * d)
                    BLAS.axpy(n: d, alpha: scale, x: layer.up.value.pointer + c * d, y: up.pointer + rep * d)
                    // down is [hidden, f]: column c adds into column rep.
                    if c != rep {
                        BLAS.axpy(n: down.shape[0], alpha: 1, x: layer.down.value.pointer + c, incX: f, y: down.pointer + rep, incY: f)
                    }
                }
                removed += m.dropFirst()
            }
            layer.gate.value = gate
            layer.up.value = up
            layer.down.value = down
            var merged = r
            merged.removedUnits = removed.sorted()
            return merged
        }
    }
}
