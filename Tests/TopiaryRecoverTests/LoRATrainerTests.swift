import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels
import TopiaryRecover
import XCTest

func tinyModel(seed: UInt64 = 1) throws -> DecoderModel {
    var rng = SplitMix64(seed: seed)
    func t(_ s: [Int]) -> Tensor { Tensor(shape: s, values: (0..<s.reduce(1, *)).map { _ in rng.nextFloat(-0.5, 0.5) }) }
    let config = ModelConfig(
        architecture: "llama", vocabSize: 40, hiddenSize: 16, headDim: 4, heads: [4, 2], kvHeads: [2, 1],
        intermediateSizes: [12, 9], ropeTheta: 10_000, rmsNormEps: 1e-5, contextLength: 64, tieWordEmbeddings: true)
    var w = ["model.embed_tokens.weight": t([40, 16]), "model.norm.weight": t([16])]
    for l in 0..<2 {
        let n = DecoderModel.parameterNames(layer: l), q = config.heads[l] * 4, kv = config.kvHeads[l] * 4, f = config.intermediateSizes[l]
        for (name, shape) in zip(n, [[16], [q, 16], [kv, 16], [kv, 16], [16, q], [16], [f, 16], [f, 16], [16, f]]) { w[name] = t(shape) }
    }
    return try DecoderModel(config: config, weights: w)
}

func tinyTokens(_ n: Int = 4000) -> [Int32] {
    var rng = SplitMix64(seed: 9)
    // A learnable pattern with noise: next token = (3·t + 1) mod 40 most of the time.
    var out: [Int32] = [1]
    for _ in 1..<n { out.append(rng.nextDouble() < 0.8 ? (out.last! * 3 + 1) % 40 : Int32(rng.next() % 40)) }
    return out
}

final class LoRATrainerTests: XCTestCase {
    var small: LoRAConfig { var l = LoRAConfig(); l.rank = 2; l.alpha = 4; return l }

    func config(steps: Int) -> TrainingConfig { tinyTrainingConfig(steps: steps, evaluateEvery: 5, seed: 7) }

    func testTrainingLowersTheLossAndCountsParameters() throws {
        let model = try tinyModel()
        let trainer = try LoRATrainer(model: model, lora: small, config: config(steps: 60), tokens: tinyTokens())
        // r · (in + out) per adapted linear.
        var expected = 0
        for l in 0..<2 {
            let q = model.config.heads[l] * 4, kv = model.config.kvHeads[l] * 4, f = model.config.intermediateSizes[l]
            for (o, i) in [(q, 16), (kv, 16), (kv, 16), (16, q), (f, 16), (f, 16), (16, f)] { expected += 2 * (o + i) }
        }
        XCTAssertEqual(trainer.trainableCount, expected)
        let before = try XCTUnwrap(trainer.validationLoss())
        try trainer.run(directory: nil)
        let after = try XCTUnwrap(trainer.validationLoss())
        XCTAssertLessThan(after, before - 0.1)
        XCTAssertTrue(model.parameters.allSatisfy { $0.grad == nil })
    }

    func testMergedModelEqualsAdapters() throws {
        let model = try tinyModel()
        let trainer = try LoRATrainer(model: model, lora: small, config: config(steps: 10), tokens: tinyTokens())
        try trainer.run(directory: nil)
        let tokens: [Int32] = [1, 4, 13, 0, 1, 4]
        let adapted = try model.forward(Graph(), tokens: tokens).value  // inference: dropout off
        trainer.merge()
        XCTAssertTrue(model.adapters.isEmpty)
        let merged = try model.forward(Graph(), tokens: tokens).value
        var worst: Float = 0
        for i in 0..<adapted.count { worst = max(worst, abs(adapted[i] - merged[i]) / max(1, abs(adapted[i]))) }
        XCTAssertLessThan(worst, 1e-5)
    }

    func testSavedAdaptersLoadUnmergedWithTheSameOutputs() throws {
        let dir = NSTemporaryDirectory() + "topiary-adapters-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try tinyModel()
        let trainer = try LoRATrainer(model: model, lora: small, config: config(steps: 5), tokens: tinyTokens())
        try trainer.run(directory: nil)
        try trainer.saveAdapters(directory: dir)
        let tokens: [Int32] = [3, 1, 4, 1, 5]
        let a = try model.forward(Graph(), tokens: tokens).value
        let fresh = try tinyModel()
        try LoRATrainer.loadAdapters(directory: dir, into: fresh)
        XCTAssertEqual(fresh.adapters.count, model.adapters.count)
        XCTAssertEqual(try fresh.forward(Graph(), tokens: tokens).value.array, a.array)
        XCTAssertThrowsError(try LoRATrainer.loadAdapters(directory: "/nonexistent", into: fresh))
    }

    func testResumedRunEndsExactlyLikeAnUninterruptedOne() throws {
        let dir = NSTemporaryDirectory() + "topiary-lora-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let straight = try LoRATrainer(model: try tinyModel(), lora: small, config: config(steps: 20), tokens: tinyTokens())
        try straight.run(directory: nil)

        let first = try LoRATrainer(model: try tinyModel(), lora: small, config: config(steps: 20), tokens: tinyTokens())
        for _ in 0..<9 { try first.trainStep() }
        try first.saveCheckpoint(directory: dir)  // the process dies here
        let second = try LoRATrainer(model: try tinyModel(), lora: small, config: config(steps: 20), tokens: tinyTokens())
        try second.resume(directory: dir)
        XCTAssertEqual(second.step, 9)
        try second.run(directory: dir)
        XCTAssertEqual(second.history.count, 20)
        let a = straight.history.last!.loss, b = second.history.last!.loss
        XCTAssertEqual(a, b, accuracy: 1e-5 * abs(a))
    }

    func testBadSettingsAreClearErrors() throws {
        let model = try tinyModel()
        var l = small
        l.targets = ["q", "attn_qq"]
        XCTAssertThrowsError(try LoRATrainer(model: model, lora: l, config: config(steps: 1), tokens: tinyTokens())) {
            guard case .unknownTarget("attn_qq", _) = $0 as? TrainingError else { return XCTFail("\($0)") }
        }
        var big = small
        big.rank = 13
        XCTAssertThrowsError(try LoRATrainer(model: try tinyModel(), lora: big, config: config(steps: 1), tokens: tinyTokens())) {
            guard case .rankTooLarge = $0 as? TrainingError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try LoRATrainer(model: try tinyModel(), lora: small, config: config(steps: 1), tokens: [1, 2, 3])) {
            guard case .data = $0 as? TrainingError else { return XCTFail("\($0)") }
        }
        // A checkpoint from another model.
        let dir = NSTemporaryDirectory() + "topiary-lora-mismatch-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let other = try LoRATrainer(model: try tinyModel(), lora: small, config: config(steps: 2), tokens: tinyTokens())
        try other.run(directory: dir)
        let m = try tinyModel()
        m.layers[1].gate.value = Tensor(zeros: [7, 16]); m.layers[1].up.value = Tensor(zeros: [7, 16]);
        m.layers[1].down.value = Tensor(zeros: [16, 7])
        try m.refreshConfig()
        let t = try LoRATrainer(model: m, lora: small, config: config(steps: 2), tokens: tinyTokens())
        XCTAssertThrowsError(try t.resume(directory: dir)) { XCTAssertTrue($0.localizedDescription.contains("different model"), "\($0)") }
    }

    func testAdamWStepMatchesTheFormula() {
        let p = Parameter(name: "p", value: Tensor(shape: [2], values: [1, -2]))
        p.grad = Tensor(shape: [2], values: [0.5, -1])
        let opt = AdamW(weightDecay: 0.1)
        opt.update([p], learningRate: 0.01)
        // Step 1: m̂ = g, v̂ = g², update = lr·g/(|g|+eps) = ±lr; decay p·(1 − lr·wd).
        XCTAssertEqual(p.value[0], 1 * (1 - 0.001) - 0.01, accuracy: 1e-6)
        XCTAssertEqual(p.value[1], -2 * (1 - 0.001) + 0.01, accuracy: 1e-6)
        XCTAssertNil(p.grad)
        XCTAssertEqual(LRSchedule.cosine.rate(base: 1, step: 5, total: 10, warmup: 0), 0.5, accuracy: 1e-6)
        XCTAssertEqual(LRSchedule.linear.rate(base: 1, step: 0, total: 10, warmup: 2), 0.5, accuracy: 1e-6)
    }
}
