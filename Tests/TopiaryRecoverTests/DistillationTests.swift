import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels
import TopiaryRecover
import XCTest

/// Distillation on a tiny model: the student moves toward its teacher, the top-K cache with K = vocabulary trains like
/// the teacher's full logits, a killed and resumed run ends where an uninterrupted one does, and bad settings are clear
/// errors.
final class DistillationTests: XCTestCase {
    var small: LoRAConfig { var l = LoRAConfig(); l.rank = 2; l.alpha = 4; l.dropout = 0; return l }
    var directories: [String] = []

    override func tearDown() {
        for d in directories { try? FileManager.default.removeItem(atPath: d) }
    }

    func temporary(_ name: String) -> String {
        let d = NSTemporaryDirectory() + "topiary-kd-\(name)-\(getpid())"
        try? FileManager.default.removeItem(atPath: d)
        directories.append(d)
        return d
    }

    func config(steps: Int) -> TrainingConfig { tinyTrainingConfig(steps: steps, evaluateEvery: 0, seed: 3) }

    func distillation(topK: Int = 0, temperature: Float = 2, weight: Float = 1, hidden: [Int] = []) -> DistillationConfig {
        var d = DistillationConfig()
        d.topK = topK
        d.temperature = temperature
        d.weight = weight
        d.hiddenLayers = hidden
        return d
    }

    /// Mean KL(teacher ‖ student) at T = 1 over a few windows of the stream.
    func divergence(_ student: DecoderModel, _ teacher: DecoderModel) throws -> Double {
        let ids = Array(tinyTokens()[3000..<3064])
        let s = try student.forward(Graph(), tokens: ids, batch: 4, cache: nil, logits: .all)
        let t = try teacher.forward(Graph(), tokens: ids, batch: 4, cache: nil, logits: .all)
        return Double(try Graph().distillationLoss(s, teacher: .logits(t.value)).value[0])
    }

    func testTheStudentMovesTowardItsTeacher() throws {
        let teacher = try tinyModel(seed: 1), student = try tinyModel(seed: 2)
        let before = try divergence(student, teacher)
        // Pure KL on full logits, and top-8 with a little of the text's loss and hidden-state matching.
        for d in [distillation(), distillation(topK: 8, weight: 0.9, hidden: [0])] {
            let s = try tinyModel(seed: 2)
            let trainer = try LoRATrainer(model: s, lora: small, config: config(steps: 40), tokens: tinyTokens())
            try trainer.distill(from: Teacher(model: teacher, config: d, cacheDirectory: temporary("move-\(d.topK)")))
            try trainer.run(directory: nil)
            XCTAssertLessThan(try divergence(s, teacher), before * 0.8, "\(d)")
        }
    }

    func testTopKCacheOfTheWholeVocabularyTrainsLikeTheFullTeacher() throws {
        let teacher = try tinyModel(seed: 1)
        func train(topK: Int, cache: String?) throws -> LoRATrainer {
            let trainer = try LoRATrainer(model: try tinyModel(seed: 2), lora: small, config: config(steps: 12), tokens: tinyTokens())
            try trainer.distill(from: Teacher(model: teacher, config: distillation(topK: topK), cacheDirectory: cache))
            try trainer.run(directory: nil)
            return trainer
        }
        let full = try train(topK: 0, cache: nil)
        let cacheDir = temporary("cache")
        let cached = try train(topK: 40, cache: cacheDir)
        XCTAssertEqual(cached.teacher!.cacheMisses, 12)
        // The second run reads every window from the cache and trains identically.
        let again = try train(topK: 40, cache: cacheDir)
        XCTAssertEqual(again.teacher!.cacheHits, 12)
        XCTAssertEqual(again.teacher!.cacheMisses, 0)
        for (a, b) in zip(full.history, cached.history) { XCTAssertEqual(a.loss, b.loss, accuracy: 1e-4 * max(1, abs(a.loss))) }
        for (a, b) in zip(cached.history, again.history) { XCTAssertEqual(a.loss, b.loss) }
        for (p, q) in zip(full.trainableParameters, cached.trainableParameters) {
            for i in 0..<p.value.count { XCTAssertEqual(p.value[i], q.value[i], accuracy: 1e-4) }
        }
        // A cache made for other settings is refused, not silently reused.
        let other = try LoRATrainer(model: try tinyModel(seed: 2), lora: small, config: config(steps: 12), tokens: tinyTokens())
        XCTAssertThrowsError(try other.distill(from: Teacher(model: teacher, config: distillation(topK: 20), cacheDirectory: cacheDir))) {
            XCTAssertTrue("\($0.localizedDescription)".contains(cacheDir), "\($0.localizedDescription)")
        }
    }

    func testKilledAndResumedDistillationEndsLikeAnUninterruptedOne() throws {
        let teacher = try tinyModel(seed: 1)
        for d in [distillation(weight: 0.7, hidden: [1]), distillation(topK: 6)] {
            let straight = try LoRATrainer(model: try tinyModel(seed: 2), lora: small, config: config(steps: 16), tokens: tinyTokens())
            try straight.distill(from: Teacher(model: teacher, config: d, cacheDirectory: temporary("straight")))
            try straight.run(directory: nil)

            let dir = temporary("resume")
            let first = try LoRATrainer(model: try tinyModel(seed: 2), lora: small, config: config(steps: 16), tokens: tinyTokens())
            try first.distill(from: Teacher(model: teacher, config: d, cacheDirectory: dir + "/teacher-cache"))
            for _ in 0..<7 { try first.trainStep() }
            try first.saveCheckpoint(directory: dir)  // the process dies here
            let second = try LoRATrainer(model: try tinyModel(seed: 2), lora: small, config: config(steps: 16), tokens: tinyTokens())
            try second.distill(from: Teacher(model: teacher, config: d, cacheDirectory: dir + "/teacher-cache"))
            try second.resume(directory: dir)
            try second.run(directory: dir)
            XCTAssertEqual(second.history.count, 16)
            for (p, q) in zip(straight.trainableParameters, second.trainableParameters) { XCTAssertEqual(p.value.array, q.value.array) }

            // Resuming without the teacher, or with other settings, is refused.
            let plain = try LoRATrainer(model: try tinyModel(seed: 2), lora: small, config: config(steps: 16), tokens: tinyTokens())
            XCTAssertThrowsError(try plain.resume(directory: dir))
        }
    }

    func testBadDistillationSettingsAreClearErrors() throws {
        let teacher = try tinyModel(seed: 1)
        func refused(_ d: DistillationConfig, _ fragment: String, student: DecoderModel? = nil) throws {
            let trainer = try LoRATrainer(
                model: try student ?? tinyModel(seed: 2), lora: small, config: config(steps: 2), tokens: tinyTokens())
            XCTAssertThrowsError(try trainer.distill(from: Teacher(model: teacher, config: d, cacheDirectory: temporary("bad")))) {
                XCTAssertTrue($0.localizedDescription.contains(fragment), "\($0.localizedDescription)")
            }
        }
        try refused(distillation(hidden: [2]), "layer 2 is outside")
        try refused(distillation(topK: 41), "--top-k 41")
        try refused(distillation(temperature: 0), "--temperature")
    }
}
