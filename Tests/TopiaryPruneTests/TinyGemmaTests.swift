import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels
import XCTest

/// The Gemma 3 variations of the decoder on a tiny random model.
final class TinyGemmaTests: XCTestCase {
    /// Incremental decoding with the KV cache (sliding window on local layers) gives the logits of the full pass.
    func testCachedDecodingEqualsTheFullPassBeyondTheWindow() throws {
        let model = try tinyGemma()
        let tokens: [Int32] = [1, 5, 2, 7, 3, 9, 4, 8, 6]
        let full = try model.forward(Graph(), tokens: tokens, batch: 1).value
        let cache = model.makeCache(batch: 1, capacity: 16)
        let vocab = model.config.vocabSize
        var worst: Float = 0
        _ = try model.forward(Graph(), tokens: Array(tokens.prefix(2)), batch: 1, cache: cache, logits: .last)
        for t in 2..<tokens.count {
            let step = try model.forward(Graph(), tokens: [tokens[t]], batch: 1, cache: cache, logits: .last).value
            for v in 0..<vocab { worst = max(worst, abs(step[v] - full[t * vocab + v])) }
        }
        XCTAssertLessThan(worst, 1e-4)
    }

    /// The window matters: a local layer that saw every key would give other logits after position 3.
    func testSlidingWindowChangesLaterPositionsOnly() throws {
        let model = try tinyGemma()
        var wide = model.config
        wide.slidingWindow = 1000  // local layers keep their RoPE base but see every key
        let params = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0.value) })
        let global = try DecoderModel(config: wide, weights: params)
        let tokens: [Int32] = [1, 5, 2, 7, 3, 9]
        let a = try model.forward(Graph(), tokens: tokens, batch: 1).value
        let b = try global.forward(Graph(), tokens: tokens, batch: 1).value
        let vocab = model.config.vocabSize
        func diff(_ t: Int) -> Float { (0..<vocab).map { abs(a[t * vocab + $0] - b[t * vocab + $0]) }.max()! }
        XCTAssertLessThan(diff(2), 1e-6)
        XCTAssertGreaterThan(diff(5), 1e-4)
    }

    /// config.json keeps every variation; a LLaMA config.json does not mention them.
    func testConfigRoundTripsTheVariations() throws {
        let config = try tinyGemma().config
        let data = try JSONEncoder().encode(config)
        XCTAssertEqual(try JSONDecoder().decode(ModelConfig.self, from: data), config)
        let json = String(decoding: data, as: UTF8.self)
        XCTAssertTrue(json.contains("sliding_attention") && json.contains("gelu_pytorch_tanh"))
        let llama = String(decoding: try JSONEncoder().encode(try tinyLlama().config), as: UTF8.self)
        XCTAssertFalse(llama.contains("sliding") || llama.contains("activation") || llama.contains("query_key_norm"))
    }

    /// Training through the variations: LoRA-free gradients of every Gemma weight are finite and non-zero.
    func testEveryGemmaWeightGetsAGradient() throws {
        let model = try tinyGemma()
        let g = Graph(recording: true)
        let tokens: [Int32] = [1, 5, 2, 7, 3, 9]
        let logits = try model.forward(g, tokens: tokens, batch: 1)
        let loss = try g.crossEntropy(logits, targets: Array(tokens.dropFirst()) + [-100])
        try g.backward(loss)
        for p in model.parameters {
            let grad = try XCTUnwrap(p.grad, p.name)
            XCTAssertTrue(grad.array.allSatisfy(\.isFinite), p.name)
            XCTAssertGreaterThan(grad.array.map(abs).max()!, 0, p.name)
        }
    }
}
