import CTopiaryKernels
import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryModels

/// Errors of evaluation inputs.
public enum EvaluationError: Error, LocalizedError, Equatable {
    case emptyText(path: String)
    case windowTooSmall(Int)
    case notEnoughTokens(path: String, tokens: Int, window: Int)
    case invalidOption(String)
    case unreadable(path: String, reason: String)

    public var errorDescription: String? {
        switch self {
        case let .emptyText(path): return "\(path): the text is empty"
        case let .windowTooSmall(w): return "--window \(w) is too small: a window needs at least 2 tokens (one prediction)"
        case let .notEnoughTokens(path, tokens, window):
            return "\(path): \(tokens) tokens are fewer than one window of \(window)"
        case let .invalidOption(m): return m
        case let .unreadable(path, reason): return "\(path): cannot read (\(reason))"
        }
    }
}

/// Perplexity over independent fixed-length windows, the protocol of the GPTQ/SparseGPT/Wanda/LLM-Pruner
/// papers: the text is tokenized whole, cut into consecutive windows of `window` tokens from the start,
/// each window run on its own (positions 0…window−1, nothing prepended); logits at position t score
/// token t+1; NLL summed in Float64; ppl = exp(ΣNLL / predictions).
public struct PerplexityEvaluator {
    public var window: Int
    /// At most this many windows (nil: all complete windows of the text).
    public var maxWindows: Int?
    /// Windows per forward pass (nil: enough to make about 512 rows).
    public var batchSize: Int?

    public init(window: Int = 512, maxWindows: Int? = 64, batchSize: Int? = nil) {
        self.window = window
        self.maxWindows = maxWindows
        self.batchSize = batchSize
    }

    public struct Result: Codable, Sendable, Equatable {
        public var ppl: Double
        public var meanNLL: Double
        public var predictions: Int
        public var tokens: Int
        public var windows: Int
        public var window: Int
        public var seconds: Double

        enum CodingKeys: String, CodingKey {
            case ppl, predictions, tokens, windows, window, seconds
            case meanNLL = "mean_nll"
        }
    }

    /// Evaluates `model` on `tokens` (already tokenized). `source` names the text in errors.
    public func evaluate(
        _ model: any LanguageModel, tokens: [Int32], source: String = "text",
        progress: ProgressBar? = nil
    ) throws -> Result {
        guard window >= 2 else { throw EvaluationError.windowTooSmall(window) }
        if let maxWindows, maxWindows < 1 { throw EvaluationError.invalidOption("--max-windows must be at least 1") }
        guard !tokens.isEmpty else { throw EvaluationError.emptyText(path: source) }
        var count = tokens.count / window
        guard count > 0 else { throw EvaluationError.notEnoughTokens(path: source, tokens: tokens.count, window: window) }
        if let maxWindows { count = min(count, maxWindows) }
        let batch = max(1, min(count, batchSize ?? max(1, 512 / window)))
        try ResourceCheck.memory(
            ResourceCheck.forwardBytes(model.config, batch: batch, length: window),
            what: "perplexity with \(batch) window\(batch == 1 ? "" : "s") of \(window) tokens per forward pass")
        let start = Date()
        var totalNLL = 0.0, predictions = 0
        var w = 0
        while w < count {
            let b = min(batch, count - w)
            let ids = Array(tokens[(w * window)..<((w + b) * window)])
            let logits = try model.forward(Graph(), tokens: ids, batch: b, cache: nil, logits: .all).value
            // Targets: next token within the window; the last position of each window predicts nothing.
            var targets = [Int32](repeating: -1, count: b * window)
            for s in 0..<b { for t in 0..<(window - 1) { targets[s * window + t] = ids[s * window + t + 1] } }
            var nll = [Double](repeating: 0, count: targets.count)
            let vocab = logits.shape.last!
            predictions += withExtendedLifetime(logits) { tk_nll_rows(logits.pointer, targets.count, vocab, targets, &nll) }
            totalNLL += nll.reduce(0, +)
            w += b
            progress?.advance(by: b, status: String(format: "ppl %.3f", exp(totalNLL / Double(max(predictions, 1)))))
        }
        progress?.finish()
        let mean = totalNLL / Double(predictions)
        return Result(
            ppl: exp(mean), meanNLL: mean, predictions: predictions, tokens: count * window, windows: count,
            window: window, seconds: Date().timeIntervalSince(start))
    }
}

/// The perplexity datasets under a data folder, read the way the papers' loaders read them.
public enum PerplexityDataset: String, CaseIterable, Sendable {
    case wikitext2
    case ptb
    case ptbValid = "ptb-valid"

    /// The file under `data`.
    public func path(data: String) -> String {
        switch self {
        case .wikitext2: return data + "/wikitext-2-raw/test.txt"
        case .ptb: return data + "/ptb/ptb.test.txt"
        case .ptbValid: return data + "/ptb/ptb.valid.txt"
        }
    }

    /// True when `path` is one of these evaluation texts (under whatever data folder).
    public static func isEvaluationText(_ path: String) -> Bool {
        let p = (path as NSString).standardizingPath
        return allCases.contains { p.hasSuffix($0.path(data: "")) }
    }

    /// The text to tokenize: WikiText-2 as is; PTB lines stripped and joined by spaces, as LLM-Pruner's loader does.
    public func prepare(_ raw: String) -> String {
        switch self {
        case .wikitext2: return raw
        case .ptb, .ptbValid: return raw.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
        }
    }
}
