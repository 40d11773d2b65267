import CTopiaryKernels
import CBLAS
import Foundation

extension Tensor {
    /// A new tensor keeping only `indices` (in the given order) along `axis`.
    public func selecting(_ indices: [Int], axis: Int) -> Tensor {
        precondition(axis >= 0 && axis < rank, "axis \(axis) out of range for \(shape)")
        let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *), n = shape[axis]
        var newShape = shape
        newShape[axis] = indices.count
        let out = Tensor(uninitialized: newShape)
        for o in 0..<outer {
            for (k, i) in indices.enumerated() {
                precondition(i >= 0 && i < n, "index \(i) out of range \(n)")
                (out.pointer + (o * indices.count + k) * inner).update(from: pointer + (o * n + i) * inner, count: inner)
            }
        }
        return out
    }

    /// A new tensor without the indices in `removed` along `axis` (order of the rest kept).
    public func removing(_ removed: Set<Int>, axis: Int) -> Tensor {
        selecting((0..<shape[axis]).filter { !removed.contains($0) }, axis: axis)
    }

    /// Sums over every axis except `axis`: one value per index of `axis` (BLAS gemv for matrices).
    public func sums(keepingAxis axis: Int) -> [Double] {
        precondition(axis >= 0 && axis < rank)
        if rank == 1 { return array.map(Double.init) }
        let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *), n = shape[axis]
        var result = [Double](repeating: 0, count: n)
        if outer == 1 {
            // [n, inner]: row sums.
            let ones = [Float](repeating: 1, count: inner)
            var r = [Float](repeating: 0, count: n)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(inner), 1, pointer, Int32(inner), ones, 1, 0, &r, 1)
            return r.map(Double.init)
        }
        if inner == 1 {
            // [outer, n]: column sums.
            let ones = [Float](repeating: 1, count: outer)
            var r = [Float](repeating: 0, count: n)
            cblas_sgemv(CblasRowMajor, CblasTrans, Int32(outer), Int32(n), 1, pointer, Int32(n), ones, 1, 0, &r, 1)
            return r.map(Double.init)
        }
        for o in 0..<outer { for i in 0..<n { for j in 0..<inner { result[i] += Double(pointer[(o * n + i) * inner + j]) } } }
        return result
    }
}

extension Tensor {
    /// Number of entries equal to zero (sparsity checks).
    public var zeroCount: Int { withExtendedLifetime(self) { tk_count_zeros(pointer, count) } }
}
