import Foundation
import TopiaryEval
import TopiaryModels
import XCTest

/// The default model and the zero-shot task folder (`TOPIARY_MODEL`, `TOPIARY_DATA`), or a skip when either is absent.
private func realModelAndTasks(file: String = #filePath) throws -> (model: String, tasks: String) {
    let root = URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    let model = ProcessInfo.processInfo.environment["TOPIARY_MODEL"] ?? root + "/checkpoints/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    let data = (ProcessInfo.processInfo.environment["TOPIARY_DATA"] ?? root + "/../shared/data") + "/zeroshot"
    guard FileManager.default.fileExists(atPath: model), FileManager.default.fileExists(atPath: data) else {
        throw XCTSkip("model or data not found")
    }
    return (model, data)
}

/// Per-item choices on the first items of every task agree with lm-evaluation-harness (HFLM on the same
/// GGUF through transformers; fixture from scripts/reference/lm_eval_zeroshot.py).
final class LMEvalAgreementTests: XCTestCase {
    func testPerItemChoicesAgreeWithLMEval() throws {
        let (model, data) = try realModelAndTasks()
        let url = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures/lm_eval_smollm2", withExtension: "json"))
        let fixture = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let results = fixture["results"] as! [String: [String: Any]]
        let loaded = try ModelLoader.load(path: model)
        let evaluator = ZeroShotEvaluator(model: loaded.model, tokenizer: loaded.tokenizer)
        let items = 24
        for task in ZeroShotTasks.all {
            let expected = try XCTUnwrap(results[task.name])
            let picks = Array((expected["predictions"] as! [Int]).prefix(items))
            let norms = Array((expected["norm_predictions"] as! [Int]).prefix(items))
            let ours = try evaluator.evaluate(task, dataDirectory: data, limit: items)
            let differ = zip(ours.predictions, picks).filter { $0 != $1 }.count
            let differNorm = zip(ours.normPredictions, norms).filter { $0 != $1 }.count
            // fp32 rounding can flip a near-tie; more than one flip in 24 items means different scoring.
            XCTAssertLessThanOrEqual(differ, 1, "\(task.name): acc picks differ on \(differ) of \(items) items")
            XCTAssertLessThanOrEqual(differNorm, 1, "\(task.name): acc_norm picks differ on \(differNorm) of \(items) items")
        }
    }
}

/// The two ways of scoring a choice — its context once through the KV cache, or whole sequences packed
/// across items — give the same log-likelihoods on every task.
final class ScoringStrategyTests: XCTestCase {
    func testPackedAndCachedScoringAgree() throws {
        let (model, data) = try realModelAndTasks()
        let loaded = try ModelLoader.load(path: model)
        var evaluator = ZeroShotEvaluator(model: loaded.model, tokenizer: loaded.tokenizer)
        evaluator.packedTokens = 192  // several packed batches of different widths
        for task in ZeroShotTasks.all {
            let items = try task.items(from: data + "/" + task.fileName, limit: 3)
            let cached = try evaluator.logLikelihoods(items, strategy: .cached)
            let packed = try evaluator.logLikelihoods(items, strategy: .packed)
            let automatic = try evaluator.logLikelihoods(items)
            for (n, (a, b)) in zip(cached, packed).enumerated() {
                XCTAssertEqual(a.count, b.count)
                for (x, y) in zip(a, b) {
                    XCTAssertEqual(x, y, accuracy: 2e-3 * max(1, abs(x)), "\(task.name) item \(n)")
                    XCTAssertLessThan(x, 0, "\(task.name) item \(n): a log-likelihood must be negative")
                }
                for (x, y) in zip(a, automatic[n]) { XCTAssertEqual(x, y, accuracy: 2e-3 * max(1, abs(x))) }
            }
        }
    }
}
