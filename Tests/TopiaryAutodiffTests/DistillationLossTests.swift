import TopiaryAutodiff
import TopiaryCore
import XCTest

/// The distillation losses (KL on temperature-scaled logits, hidden-state MSE): values against a direct computation in
/// Double, gradients against finite differences, the top-K form against the full one.
final class DistillationLossTests: XCTestCase {
    var rng = TestRNG(seed: 7)

    /// `T² · mean_rows KL(softmax(t/T) ‖ softmax(s/T))` in Double.
    func referenceKL(_ s: Tensor, _ t: Tensor, temperature: Double) -> Double {
        let vocab = s.shape.last!, rows = s.count / vocab
        var total = 0.0
        for r in 0..<rows {
            let z = (0..<vocab).map { Double(s[r * vocab + $0]) / temperature }
            let u = (0..<vocab).map { Double(t[r * vocab + $0]) / temperature }
            let lz = log(z.map { exp($0 - z.max()!) }.reduce(0, +)) + z.max()!
            let lu = log(u.map { exp($0 - u.max()!) }.reduce(0, +)) + u.max()!
            for j in 0..<vocab { total += exp(u[j] - lu) * ((u[j] - lu) - (z[j] - lz)) }
        }
        return total / Double(rows) * temperature * temperature
    }

    func testFullTeacherValueAndGradient() throws {
        let teacher = rng.tensor([5, 7], -3, 3)
        let student = rng.tensor([5, 7], -3, 3)
        for temperature: Float in [1, 2.5] {
            let loss = try Graph().distillationLoss(Graph().input(student), teacher: .logits(teacher), temperature: temperature)
            XCTAssertEqual(Double(loss.value[0]), referenceKL(student, teacher, temperature: Double(temperature)), accuracy: 1e-5)
            try assertGradients([rng.tensor([5, 7], -3, 3)]) { g, x in
                try g.distillationLoss(x[0], teacher: .logits(teacher), temperature: temperature)
            }
        }
        // A student equal to its teacher has zero loss and zero gradient.
        let same = try lossAndGradient(teacher, .logits(teacher), temperature: 2)
        XCTAssertEqual(same.loss, 0, accuracy: 1e-6)
        XCTAssertLessThan(same.gradient.map(abs).max()!, 1e-6)
    }

    func testTopKTeacherGradientAndTail() throws {
        let teacher = rng.tensor([4, 9], -3, 3)
        for k in [1, 3, 8] {
            let targets = TeacherTargets.topK(of: teacher, k: k, temperature: 1.5)
            try assertGradients([rng.tensor([4, 9], -3, 3)]) { g, x in try g.distillationLoss(x[0], teacher: targets, temperature: 1.5) }
        }
        // Top-K with the tail as one bucket: by hand for one row of four tokens, K = 2.
        let t = Tensor(shape: [1, 4], values: [2, 1, 0, -1]), s = Tensor(shape: [1, 4], values: [0.5, 1, -0.5, 0])
        let p = softmax(t.array.map(Double.init)), q = softmax(s.array.map(Double.init))
        let tailP = p[2] + p[3], tailQ = q[2] + q[3]
        let expected = p[0] * log(p[0] / q[0]) + p[1] * log(p[1] / q[1]) + tailP * log(tailP / tailQ)
        let got = try Graph().distillationLoss(Graph().input(s), teacher: .topK(of: t, k: 2, temperature: 1), temperature: 1)
        XCTAssertEqual(Double(got.value[0]), expected, accuracy: 1e-6)
    }

    func testTopKOfTheWholeVocabularyEqualsTheFullTeacher() throws {
        let teacher = rng.tensor([6, 50], -4, 4), student = rng.tensor([6, 50], -4, 4)
        let full = try lossAndGradient(student, .logits(teacher), temperature: 2)
        let topK = try lossAndGradient(student, .topK(of: teacher, k: 50, temperature: 2), temperature: 2)
        XCTAssertEqual(full.loss, topK.loss, accuracy: 1e-6 * max(1, abs(full.loss)))
        for i in 0..<full.gradient.count { XCTAssertEqual(full.gradient[i], topK.gradient[i], accuracy: 1e-6) }
        // The ids come strongest first, ties broken by the lower id.
        if case let .topK(_, ids, logProbs) = TeacherTargets.topK(of: Tensor(shape: [1, 4], values: [1, 3, 3, 0]), k: 3, temperature: 1) {
            XCTAssertEqual(ids, [1, 2, 0])
            XCTAssertEqual(Double(logProbs[0]), log(softmax([1, 3, 3, 0])[1]), accuracy: 1e-6)
        } else {
            XCTFail("topK(of:) gave full logits")
        }
    }

    func testMeanSquaredError() throws {
        let target = rng.tensor([3, 4])
        try assertGradients([rng.tensor([3, 4])]) { g, x in try g.meanSquaredError(x[0], target: target) }
        XCTAssertThrowsError(try Graph().meanSquaredError(Graph().input(target), target: rng.tensor([4, 3])))
    }

    func testBadTeacherTargetsAreRefused() {
        let s = rng.tensor([2, 5])
        XCTAssertThrowsError(try Graph().distillationLoss(Graph().input(s), teacher: .logits(rng.tensor([2, 4]))))
        XCTAssertThrowsError(try Graph().distillationLoss(Graph().input(s), teacher: .topK(k: 1, ids: [0, 5], logProbs: [0, 0])))
        XCTAssertThrowsError(try Graph().distillationLoss(Graph().input(s), teacher: .logits(s), temperature: 0))
    }

    func lossAndGradient(_ s: Tensor, _ teacher: TeacherTargets, temperature: Float) throws -> (loss: Double, gradient: [Float]) {
        let g = Graph(recording: true), p = Parameter(name: "logits", value: s.copy())
        let l = try g.distillationLoss(g.parameter(p), teacher: teacher, temperature: temperature)
        try g.backward(l)
        return (Double(l.value[0]), p.grad!.array)
    }

    func softmax(_ x: [Double]) -> [Double] {
        let m = x.max()!, e = x.map { exp($0 - m) }, s = e.reduce(0, +)
        return e.map { $0 / s }
    }
}
