import Foundation
import TopiaryEval

/// Perplexity on the data folder's texts: windows of `window` tokens, at most `windows` of them.
public struct PerplexityConfig: Codable, Sendable, Equatable {
    public var datasets = ["wikitext2"]
    public var window = 512
    public var windows = 64

    public init(datasets: [String] = ["wikitext2"], window: Int = 512, windows: Int = 64) {
        self.datasets = datasets
        self.window = window
        self.windows = windows
    }

    public func validate() throws {
        try Require.that(!datasets.isEmpty, "datasets", nil, "{datasets} must name at least one dataset")
        for d in datasets {
            try Require.that(
                PerplexityDataset(rawValue: d) != nil, "datasets", d,
                "is not a perplexity dataset (\(PerplexityDataset.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        try Require.inRange(window, "window", 2...(1 << 24))
        try Require.inRange(windows, "windows", 1...1_000_000)
    }
}

public struct GenerationConfig: Codable, Sendable, Equatable {
    public var prompts: [String] = []
    public var maxTokens = 32

    public init() {}

    public func validate() throws { try Require.inRange(maxTokens, "max_tokens", 1...4096) }
}

/// What the evaluate stage measures on which models.
/// Speed of each evaluated model in Topiary's own forward, measured side by side in one run: a forward over `prompt`
/// tokens (prompt processing) and `decode` single-token steps with the KV cache, the models interleaved `repeats` times
/// (medians), so drift of a shared machine hits them alike.
public struct SpeedConfig: Codable, Sendable, Equatable {
    public var repeats = 5
    public var prompt = 512
    public var decode = 64

    public init() {}

    public func validate() throws {
        try Require.inRange(repeats, "repeats", 1...1000)
        try Require.inRange(prompt, "prompt", 1...(1 << 20))
        try Require.inRange(decode, "decode", 1...(1 << 20))
    }
}

public struct EvaluateConfig: Codable, Sendable, Equatable {
    public static let modelLabels = ["base", "pruned", "final"]

    /// Which models to evaluate: `base` (as loaded), `pruned` (after prune/sparsify), `final` (the run's output).
    public var models = ["base", "pruned", "final"]
    public var perplexity: PerplexityConfig? = PerplexityConfig()
    public var tasks: [String] = []
    public var limit: Int?
    public var generation = GenerationConfig()
    /// Speed (and file size) of every model, measured side by side; nil: not measured.
    public var speed: SpeedConfig?

    public init() {}

    public func validate() throws {
        for m in models { try Require.that(Self.modelLabels.contains(m), "models", m, "must be base, pruned or final") }
        for t in tasks {
            try Require.that(ZeroShotTasks.names.contains(t), "tasks", t, "is not a task (\(ZeroShotTasks.names.joined(separator: ", ")))")
        }
        if let limit { try Require.inRange(limit, "limit", 1...10_000_000) }
        if let perplexity { try Require.part("perplexity") { try perplexity.validate() } }
        try Require.part("generation") { try generation.validate() }
        if let speed { try Require.part("speed") { try speed.validate() } }
    }
}
