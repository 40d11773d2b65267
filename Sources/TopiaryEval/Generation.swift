import CTopiaryKernels
import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels
import TopiaryTokenizers

/// Sampling settings for text generation. Temperature 0 is greedy decoding.
public struct GenerationOptions: Sendable {
    public var maxTokens: Int
    public var temperature: Float
    public var topP: Float
    public var topK: Int
    public var seed: UInt64
    public var stopAtEndOfSequence: Bool

    public init(
        maxTokens: Int = 32, temperature: Float = 0, topP: Float = 1, topK: Int = 0, seed: UInt64 = 0,
        stopAtEndOfSequence: Bool = true
    ) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.seed = seed
        self.stopAtEndOfSequence = stopAtEndOfSequence
    }

    public func validate() throws {
        guard maxTokens >= 0 else { throw EvaluationError.invalidOption("--max-tokens must be ≥ 0") }
        guard temperature >= 0, temperature.isFinite else { throw EvaluationError.invalidOption("--temperature must be ≥ 0") }
        guard topP > 0, topP <= 1 else { throw EvaluationError.invalidOption("--top-p must be in (0, 1]") }
        guard topK >= 0 else { throw EvaluationError.invalidOption("--top-k must be ≥ 0") }
    }
}

/// Autoregressive decoding with a KV cache.
public struct Generator {
    public let model: any LanguageModel
    public let endOfSequence: Int?

    public init(model: any LanguageModel, endOfSequence: Int? = nil) {
        self.model = model
        self.endOfSequence = endOfSequence
    }

    /// Generates up to `options.maxTokens` tokens after `prompt`; `onToken` sees each new id as it comes.
    public func generate(
        prompt: [Int32], options: GenerationOptions = .init(),
        onToken: ((Int32) -> Void)? = nil
    ) throws -> [Int32] {
        try options.validate()
        guard !prompt.isEmpty else { throw EvaluationError.invalidOption("the prompt is empty") }
        guard options.maxTokens > 0 else { return [] }
        let cache = model.makeCache(batch: 1, capacity: prompt.count + options.maxTokens)
        var rng = SplitMix64(seed: options.seed)
        var logits = try model.forward(Graph(), tokens: prompt, batch: 1, cache: cache, logits: .last).value
        var out: [Int32] = []
        while true {
            let next = Self.sample(logits, options: options, rng: &rng)
            out.append(next)
            onToken?(next)
            if out.count >= options.maxTokens { break }
            if options.stopAtEndOfSequence, let eos = endOfSequence, Int(next) == eos { break }
            logits = try model.forward(Graph(), tokens: [next], batch: 1, cache: cache, logits: .last).value
        }
        return out
    }

    static func sample(_ logits: Tensor, options: GenerationOptions, rng: inout SplitMix64) -> Int32 {
        let vocab = logits.count
        if options.temperature == 0 {
            var best: Int32 = 0
            tk_argmax_rows(logits.pointer, 1, vocab, &best)
            return best
        }
        // Softmax at the temperature, then top-k / top-p filtering.
        var pairs = (0..<vocab).map { (Int32($0), logits[$0] / options.temperature) }
        pairs.sort { $0.1 > $1.1 }
        if options.topK > 0 { pairs = Array(pairs.prefix(options.topK)) }
        let m = pairs[0].1
        var probs = pairs.map { Double(exp($0.1 - m)) }
        let total = probs.reduce(0, +)
        probs = probs.map { $0 / total }
        var keep = probs.count, cumulative = 0.0
        for (i, p) in probs.enumerated() {
            cumulative += p
            if cumulative >= Double(options.topP) { keep = i + 1; break }
        }
        let mass = probs.prefix(keep).reduce(0, +)
        var u = rng.nextDouble() * mass
        for i in 0..<keep {
            u -= probs[i]
            if u <= 0 { return pairs[i].0 }
        }
        return pairs[keep - 1].0
    }
}
