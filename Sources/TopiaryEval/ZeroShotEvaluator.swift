import CTopiaryKernels
import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels
import TopiaryTokenizers

/// Scores multiple-choice items as lm-evaluation-harness does: the summed log-likelihood of each
/// continuation after its context (`acc`), and the same divided by the choice's length in characters
/// (`acc_norm`). Continuations that share a long context reuse its KV cache; short requests of many
/// items are packed into batched forwards.
public struct ZeroShotEvaluator {
    public let model: any LanguageModel
    public let tokenizer: any Tokenizer

    public init(model: any LanguageModel, tokenizer: any Tokenizer) {
        self.model = model
        self.tokenizer = tokenizer
    }

    public struct TaskResult: Codable, Sendable {
        public var task: String
        public var n: Int
        public var acc: Double
        public var accStderr: Double
        public var accNorm: Double?
        public var accNormStderr: Double?
        public var seconds: Double
        /// Per item: the choice picked by acc, by acc_norm, and the log-likelihoods.
        public var predictions: [Int]
        public var normPredictions: [Int]
        public var logLikelihoods: [[Double]]

        enum CodingKeys: String, CodingKey {
            case task, n, acc, seconds, predictions
            case accStderr = "acc_stderr"
            case accNorm = "acc_norm"
            case accNormStderr = "acc_norm_stderr"
            case normPredictions = "norm_predictions"
            case logLikelihoods = "log_likelihoods"
        }
    }

    /// lm-eval's `_encode_pair`: trailing spaces of the context move to the continuation; the
    /// continuation's tokens are those of `context + continuation` past the context's own tokens.
    func encodePair(_ context: String, _ continuation: String) -> (context: [Int32], continuation: [Int32]) {
        var ctx = context, cont = continuation
        let trimmed = ctx.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        if trimmed.count < ctx.count {
            cont = String(ctx.dropFirst(trimmed.count)) + cont
            ctx = trimmed
        }
        var c = tokenizer.encode(ctx, addSpecialTokens: false, parseSpecial: false).map(Int32.init)
        let whole = tokenizer.encode(ctx + cont, addSpecialTokens: false, parseSpecial: false).map(Int32.init)
        var rest = Array(whole.dropFirst(c.count))
        if c.isEmpty, let eos = tokenizer.eosTokenID { c = [Int32(eos)] }
        if rest.isEmpty { rest = whole.suffix(1) }
        return (c, rest)
    }

    /// How a group of choices sharing one context is scored.
    public enum Strategy: Sendable {
        /// Pick per item: pack short requests across items, cache long shared contexts.
        case automatic
        /// The context once through the KV cache, then every continuation of it as one batch.
        case cached
        /// Every choice as one whole sequence (context + continuation), many items per forward.
        case packed
    }

    /// Token budget of one packed forward (rows × padded length).
    public var packedTokens = 2048
    /// The fixed cost of a forward pass, in tokens of work, used to choose between the strategies.
    static let passOverheadTokens = 48

    /// Log-likelihoods of every choice of `item`.
    public func logLikelihoods(_ item: MultipleChoiceItem, strategy: Strategy = .automatic) throws -> [Double] {
        try logLikelihoods([item], strategy: strategy)[0]
    }

    /// Log-likelihoods of every choice of every item. Choices that share a long context run it once
    /// through the KV cache; short requests (ARC, PIQA, WinoGrande, OpenBookQA) are packed across items
    /// into batched forwards, where one small forward per item would cost mostly overhead. Both give
    /// the same numbers up to float rounding.
    public func logLikelihoods(_ items: [MultipleChoiceItem], strategy: Strategy = .automatic) throws -> [[Double]] {
        var result = items.map { [Double](repeating: 0, count: $0.continuations.count) }
        var packed: [PackedRequest] = []
        for (n, item) in items.enumerated() {
            // Group choices by their context so that the context runs once.
            var byContext: [String: [Int]] = [:]
            var order: [String] = []
            for (i, c) in item.contexts.enumerated() {
                if byContext[c] == nil { order.append(c) }
                byContext[c, default: []].append(i)
            }
            for context in order {
                let choices = byContext[context]!
                let pairs = choices.map { encodePair(context, item.continuations[$0]) }
                let ctx = pairs[0].context.count, conts = pairs.map(\.continuation.count)
                // Work in tokens: the cached path runs the context once and the continuations as a
                // second pass; the packed path runs each choice whole but shares passes with other items.
                let cachedCost = ctx + conts.reduce(0, +) + 2 * Self.passOverheadTokens
                let packedCost = conts.reduce(0) { $0 + ctx + $1 } + Self.passOverheadTokens / Self.chunkItems
                let usePacked = strategy == .packed || (strategy == .automatic && packedCost <= cachedCost)
                if usePacked {
                    for (k, choice) in choices.enumerated() {
                        packed.append(
                            PackedRequest(
                                item: n, choice: choice, tokens: pairs[k].context + pairs[k].continuation,
                                continuationStart: ctx))
                    }
                } else {
                    let lls = try cachedLogLikelihoods(pairs)
                    for (k, choice) in choices.enumerated() { result[n][choice] = lls[k] }
                }
            }
        }
        for r in try packedLogLikelihoods(packed) { result[r.item][r.choice] = r.logLikelihood }
        return result
    }

    struct PackedRequest {
        var item: Int, choice: Int
        var tokens: [Int32]
        var continuationStart: Int
        var logLikelihood = 0.0
    }

    /// Whole sequences, longest first, right-padded into batches of at most ``packedTokens`` tokens
    /// (padding after a sequence is never seen by its own positions under causal attention).
    func packedLogLikelihoods(_ requests: [PackedRequest]) throws -> [PackedRequest] {
        var sorted = requests.sorted { $0.tokens.count > $1.tokens.count }
        var start = 0
        while start < sorted.count {
            let width = sorted[start].tokens.count
            let rows = max(1, min(sorted.count - start, packedTokens / max(width, 1)))
            // Only the positions that predict a continuation token reach the output projection.
            var inputs = [Int32](repeating: 0, count: rows * width), positions: [Int] = [], targets: [Int32] = []
            for r in 0..<rows {
                let q = sorted[start + r]
                for i in 0..<q.tokens.count { inputs[r * width + i] = q.tokens[i] }
                for i in (q.continuationStart - 1)..<(q.tokens.count - 1) {
                    positions.append(r * width + i)
                    targets.append(q.tokens[i + 1])
                }
            }
            let logits = try model.forward(Graph(), tokens: inputs, batch: rows, cache: nil, logits: .rows(positions)).value
            let vocab = logits.count / positions.count
            var nll = [Double](repeating: 0, count: positions.count)
            _ = withExtendedLifetime(logits) { tk_nll_rows(logits.pointer, positions.count, vocab, targets, &nll) }
            var k = 0
            for r in 0..<rows {
                let q = sorted[start + r], n = q.tokens.count - q.continuationStart
                sorted[start + r].logLikelihood = -nll[k..<(k + n)].reduce(0, +)
                k += n
            }
            start += rows
        }
        return sorted
    }

    /// One context through the KV cache; the first continuation token from its last logits; the rest
    /// of every continuation in one batch on copies of the cache.
    func cachedLogLikelihoods(_ pairs: [(context: [Int32], continuation: [Int32])]) throws -> [Double] {
        var result = [Double](repeating: 0, count: pairs.count)
        let ctx = pairs[0].context
        let cache = model.makeCache(batch: 1, capacity: ctx.count)
        let last = try model.forward(Graph(), tokens: ctx, batch: 1, cache: cache, logits: .last).value
        let vocab = last.count
        for k in pairs.indices {
            var nll = [Double](repeating: 0, count: 1)
            _ = withExtendedLifetime(last) { tk_nll_rows(last.pointer, 1, vocab, [pairs[k].continuation[0]], &nll) }
            result[k] = -nll[0]
        }
        // The rest of every continuation in one batch (padded at the end, which causal attention ignores),
        // each row continuing a copy of the context's cache.
        let rest = pairs.map { Array($0.continuation.dropFirst()) }
        let width = rest.map(\.count).max() ?? 0
        guard width > 0 else { return result }
        let batch = try ZeroShotEvaluator.batched(cache: cache, rows: pairs.count, width: width)
        var inputs = [Int32](repeating: 0, count: pairs.count * width), targets = [Int32](repeating: -1, count: pairs.count * width)
        for (k, p) in pairs.enumerated() {
            for i in 0..<rest[k].count {
                inputs[k * width + i] = p.continuation[i]
                targets[k * width + i] = p.continuation[i + 1]
            }
        }
        let logits = try model.forward(Graph(), tokens: inputs, batch: pairs.count, cache: batch, logits: .all).value
        var rows = [Double](repeating: 0, count: inputs.count)
        _ = withExtendedLifetime(logits) { tk_nll_rows(logits.pointer, inputs.count, vocab, targets, &rows) }
        for k in pairs.indices { result[k] -= rows[(k * width)..<(k * width + width)].reduce(0, +) }
        return result
    }

    static func batched(cache: KVCache, rows: Int, width: Int) throws -> KVCache {
        cache.replicated(batch: rows, capacity: cache.length + width)
    }

    /// Items scored together (the packed requests of a chunk share forwards).
    public static let chunkItems = 32

    public func evaluate(
        _ task: any EvaluationTask, dataDirectory: String, limit: Int?, progress: ProgressBar? = nil,
        strategy: Strategy = .automatic
    ) throws -> TaskResult {
        let items = try task.items(from: dataDirectory + "/" + task.fileName, limit: limit)
        let start = Date()
        let scores = try score(items, progress: progress, strategy: strategy)
        progress?.finish()
        return Self.result(task: task, items: items, scores: scores, seconds: Date().timeIntervalSince(start))
    }

    /// What the model chose for each item: the pick by summed log-likelihood, the pick by length-normalised
    /// log-likelihood, and the log-likelihoods themselves.
    public struct ItemScores: Codable, Sendable, Equatable {
        public var predictions: [Int] = []
        public var normPredictions: [Int] = []
        public var logLikelihoods: [[Double]] = []
        public init() {}

        public mutating func append(_ other: ItemScores) {
            predictions += other.predictions
            normPredictions += other.normPredictions
            logLikelihoods += other.logLikelihoods
        }
    }

    /// Scores `items` in chunks of ``chunkItems`` (packed requests batch across a chunk; a slice that starts at a
    /// multiple of ``chunkItems`` is batched exactly as the whole task is, so its scores are the same).
    public func score(_ items: [MultipleChoiceItem], progress: ProgressBar? = nil, strategy: Strategy = .automatic) throws -> ItemScores {
        var out = ItemScores()
        var correct = 0
        for chunk in stride(from: 0, to: items.count, by: Self.chunkItems) {
            let part = Array(items[chunk..<min(items.count, chunk + Self.chunkItems)])
            for (item, ll) in zip(part, try logLikelihoods(part, strategy: strategy)) {
                let pick = argmax(ll)
                let norm = argmax(zip(ll, item.choiceTexts).map { $0 / Double(max(1, $1.count)) })
                out.predictions.append(pick)
                out.normPredictions.append(norm)
                out.logLikelihoods.append(ll)
                if pick == item.gold { correct += 1 }
                progress?.advance(status: String(format: "acc %.3f", Double(correct) / Double(out.predictions.count)))
            }
        }
        return out
    }

    /// A task's accuracies and their standard errors from the scores of all its items.
    public static func result(task: any EvaluationTask, items: [MultipleChoiceItem], scores: ItemScores, seconds: Double) -> TaskResult {
        let e = Statistics()
        let accs = zip(scores.predictions, items).map { $0 == $1.gold ? 1.0 : 0.0 }
        let normAccs = zip(scores.normPredictions, items).map { $0 == $1.gold ? 1.0 : 0.0 }
        return TaskResult(
            task: task.name, n: items.count, acc: e.mean(accs), accStderr: e.stderr(accs),
            accNorm: task.reportsAccNorm ? e.mean(normAccs) : nil, accNormStderr: task.reportsAccNorm ? e.stderr(normAccs) : nil,
            seconds: seconds, predictions: scores.predictions, normPredictions: scores.normPredictions,
            logLikelihoods: scores.logLikelihoods)
    }

    /// lm-eval's mean and `mean_stderr`.
    struct Statistics {
        func mean(_ v: [Double]) -> Double { v.isEmpty ? 0 : v.reduce(0, +) / Double(v.count) }
        /// Sample standard deviation / √n.
        func stderr(_ v: [Double]) -> Double {
            guard v.count > 1 else { return 0 }
            let m = mean(v)
            return (v.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(v.count - 1)).squareRoot() / Double(v.count).squareRoot()
        }
    }

    func argmax(_ v: [Double]) -> Int { v.indices.max { v[$0] < v[$1] || (v[$0] == v[$1] && $0 > $1) } ?? 0 }
}

extension ZeroShotEvaluator.TaskResult {
    /// The score the papers report: acc_norm where lm-eval reports it (ARC, HellaSwag, OBQA, PIQA), acc otherwise.
    public var headline: Double { accNorm ?? acc }
    public var headlineStderr: Double { accNorm == nil ? accStderr : accNormStderr ?? 0 }
}

extension ZeroShotEvaluator {
    /// The mean of the tasks' headline scores and its standard error √(Σ seᵢ²) / n (the tasks are independent samples).
    public static func average(_ results: [TaskResult]) -> (mean: Double, stderr: Double) {
        guard !results.isEmpty else { return (0, 0) }
        let n = Double(results.count)
        return (
            results.map(\.headline).reduce(0, +) / n, results.map { $0.headlineStderr * $0.headlineStderr }.reduce(0, +).squareRoot() / n
        )
    }

    /// Whether two scores with standard errors `a` and `b` differ by at least two standard errors of their difference.
    public static func differ(_ x: Double, _ a: Double, _ y: Double, _ b: Double) -> Bool { abs(x - y) >= 2 * (a * a + b * b).squareRoot() }
}
