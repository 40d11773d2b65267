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
public struct EvaluateConfig: Codable, Sendable, Equatable {
    public static let modelLabels = ["base", "pruned", "final"]

    /// Which models to evaluate: `base` (as loaded), `pruned` (after prune/sparsify), `final` (the run's output).
    public var models = ["base", "pruned", "final"]
    public var perplexity: PerplexityConfig? = PerplexityConfig()
    public var tasks: [String] = []
    public var limit: Int?
    public var generation = GenerationConfig()

    public init() {}

    public func validate() throws {
        for m in models { try Require.that(Self.modelLabels.contains(m), "models", m, "must be base, pruned or final") }
        for t in tasks {
            try Require.that(ZeroShotTasks.names.contains(t), "tasks", t, "is not a task (\(ZeroShotTasks.names.joined(separator: ", ")))")
        }
        if let limit { try Require.inRange(limit, "limit", 1...10_000_000) }
        if let perplexity { try Require.part("perplexity") { try perplexity.validate() } }
        try Require.part("generation") { try generation.validate() }
    }
}
