import CTopiaryKernels
import Foundation
import TopiaryCore

/// The teacher's side of a distillation loss: one distribution per row of the student's logits.
public enum TeacherTargets: Sendable {
    /// The teacher's logits, `[rows, vocab]` like the student's.
    case logits(Tensor)
    /// The teacher's `k` most likely tokens per row (`ids`, `rows × k`) with their log-probabilities at the loss's
    /// temperature; the rest of the mass (the tail) is compared with the student's mass outside those tokens.
    case topK(k: Int, ids: [Int32], logProbs: [Float])

    /// The `k` most likely tokens of each row of `logits` and their log-probabilities at `temperature`.
    public static func topK(of logits: Tensor, k: Int, temperature: Float) -> TeacherTargets {
        let vocab = logits.shape.last ?? 1, rows = logits.count / max(vocab, 1), k = min(k, vocab)
        var ids = [Int32](repeating: 0, count: rows * k), logProbs = [Float](repeating: 0, count: rows * k)
        ids.withUnsafeMutableBufferPointer { i in
            logProbs.withUnsafeMutableBufferPointer { l in
                let i = Unchecked(i.baseAddress!), l = Unchecked(l.baseAddress!)
                Graph.rowwise(rows, width: vocab) { r in
                    tk_topk_logprobs(
                        logits.pointer + r.lowerBound * vocab, r.count, vocab, k, 1 / temperature, i.value + r.lowerBound * k,
                        l.value + r.lowerBound * k)
                }
            }
        }
        return .topK(k: k, ids: ids, logProbs: logProbs)
    }
}

extension Graph {
    /// Mean over rows of `T² · KL(teacher ‖ student)` on temperature-scaled distributions (Hinton et al.: the T²
    /// keeps the gradient's size independent of T). With the teacher's full logits this is the exact KL; with its
    /// top-K, the tokens outside the top-K count as one bucket (exact when K is the vocabulary).
    public func distillationLoss(_ logits: Var, teacher: TeacherTargets, temperature: Float = 1) throws -> Var {
        guard logits.shape.count >= 2, let vocab = logits.shape.last, vocab > 0 else {
            throw AutodiffError.shapeMismatch(op: "distillationLoss", shapes: [logits.shape])
        }
        guard temperature.isFinite && temperature > 0 else {
            throw AutodiffError.invalidArgument(op: "distillationLoss", message: "temperature \(temperature) must be positive")
        }
        let rows = logits.value.count / vocab
        switch teacher {
        case .logits(let t):
            guard t.shape == logits.shape else {
                throw AutodiffError.shapeMismatch(op: "distillationLoss", shapes: [logits.shape, t.shape])
            }
        case let .topK(k, ids, logProbs):
            guard k >= 1, k <= vocab, ids.count == rows * k, logProbs.count == rows * k else {
                throw AutodiffError.invalidArgument(
                    op: "distillationLoss", message: "top-\(k) teacher targets of \(ids.count) ids for \(rows) rows of \(vocab)")
            }
            if let bad = ids.first(where: { $0 < 0 || $0 >= Int32(vocab) }) {
                throw AutodiffError.invalidArgument(op: "distillationLoss", message: "teacher token \(bad) outside the vocabulary")
            }
        }
        let s = logits.value, invT = 1 / temperature
        // Σ over rows; `grad` (when given) gets `gscale · (q − p)`.
        func evaluate(gscale: Float, grad: Tensor?) -> Double {
            let total = Locked(0.0)
            Self.rowwise(rows, width: vocab) { r in
                let o = r.lowerBound * vocab
                let part: Double
                switch teacher {
                case .logits(let t):
                    part = tk_kd_full_rows(s.pointer + o, t.pointer + o, r.count, vocab, invT, gscale, grad.map { $0.pointer + o })
                case let .topK(k, ids, logProbs):
                    var mark = [UInt8](repeating: 0, count: vocab)
                    part = ids.withUnsafeBufferPointer { i in
                        logProbs.withUnsafeBufferPointer { l in
                            tk_kd_topk_rows(
                                s.pointer + o, r.count, vocab, i.baseAddress! + r.lowerBound * k, l.baseAddress! + r.lowerBound * k, k,
                                invT, gscale, grad.map { $0.pointer + o }, &mark)
                        }
                    }
                }
                total.update { $0 += part }
            }
            return total.value
        }
        let scale = Double(temperature * temperature) / Double(rows)
        let loss = Tensor(shape: [1], values: [Float(evaluate(gscale: 0, grad: nil) * scale)])
        return record(.distillation, [logits], output: loss, attributes: ["vocab": vocab]) { dy, _ in
            // d(T² KL)/ds = T² · (1/T) · (q − p), averaged over rows.
            let dl = Tensor(uninitialized: s.shape)
            _ = evaluate(gscale: dy[0] * temperature / Float(rows), grad: dl)
            return [dl]
        }
    }

    /// Mean of `(x − target)²` over all elements (a hidden-state distillation loss).
    public func meanSquaredError(_ x: Var, target: Tensor) throws -> Var {
        guard target.shape == x.shape else { throw AutodiffError.shapeMismatch(op: "meanSquaredError", shapes: [x.shape, target.shape]) }
        let n = x.value.count, xv = x.value
        var sum = 0.0
        for i in 0..<n { let d = Double(xv[i] - target[i]); sum += d * d }
        let y = Tensor(shape: [1], values: [Float(sum / Double(max(n, 1)))])
        return record(.meanSquaredError, [x], output: y) { dy, _ in
            let dx = Tensor(uninitialized: xv.shape)
            let k = 2 * dy[0] / Float(max(n, 1))
            for i in 0..<n { dx[i] = k * (xv[i] - target[i]) }
            return [dx]
        }
    }
}
