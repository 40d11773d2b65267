import Foundation
import TopiaryPrune

/// A row of a sweep: an unstructured method (level = sparsity of the linear weights), or a structured criterion,
/// `structured-<criterion>` (level = fraction of non-embedding parameters removed, every layer alike; `structured-kmeans`
/// merges MLP channels by k-means with Taylor for the heads). Encoded as its name, so sweeps of unstructured methods
/// keep their stage keys.
public struct SweepMethod: RawRepresentable, Codable, Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        case sparsify(SparsifyMethod)
        case structured(ImportanceCriterion)
        case kmeans
    }
    public let kind: Kind
    public init(_ kind: Kind) { self.kind = kind }

    public init?(rawValue: String) {
        if let m = SparsifyMethod(rawValue: rawValue) { kind = .sparsify(m); return }
        guard rawValue.hasPrefix("structured-") else { return nil }
        let name = String(rawValue.dropFirst("structured-".count))
        if name == "kmeans" { kind = .kmeans; return }
        guard let c = ImportanceCriterion(rawValue: name), c.implementation.inSweeps else { return nil }
        kind = .structured(c)
    }

    public var rawValue: String {
        switch kind {
        case let .sparsify(m): return m.rawValue
        case let .structured(c): return "structured-" + c.rawValue
        case .kmeans: return "structured-kmeans"
        }
    }

    /// Every name a sweep accepts.
    public static var allNames: [String] {
        SparsifyMethod.allCases.map(\.rawValue)
            + ImportanceCriterion.allCases.filter(\.implementation.inSweeps).map { "structured-" + $0.rawValue } + ["structured-kmeans"]
    }

    public var needsCalibration: Bool {
        switch kind {
        case let .sparsify(m): return m.needsCalibration
        case let .structured(c): return c.needs().readsCalibration
        case .kmeans: return true
        }
    }
}

public struct SweepConfig: Codable, Sendable, Equatable {
    public var methods: [SweepMethod] = ["magnitude", "neg-magnitude", "wanda", "sparsegpt"].map { SweepMethod(rawValue: $0)! }
    public var levels: [Double] = [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
    public var perplexity = PerplexityConfig(datasets: ["wikitext2"], window: 512, windows: 64)
    public var calibration = CalibrationConfig(windows: 32, length: 512)
    public var seed: UInt64 = 0
    /// An earlier sweep's output folder whose finished cells are taken over when its model, data, calibration,
    /// perplexity settings and seed are the same (not part of the stage key: it changes no result).
    public var reuse: String?
    /// This process computes only its shard's cells and leaves the table to a run without a shard (not part of the
    /// stage key: every shard and the assembling run share the stage).
    public var shard: Shard?
    /// The assembling run only gathers: missing cells are listed and the run fails instead of computing them.
    public var noCompute = false

    public init() {}

    enum CodingKeys: String, CodingKey { case methods, levels, perplexity, calibration, seed }

    public func validate() throws {
        try Require.that(!methods.isEmpty, "methods", nil, "{methods} must name at least one method")
        try Require.that(!levels.isEmpty, "levels", nil, "{levels} must list at least one level")
        for l in levels { try Require.halfOpen(l, "levels", 0, 1) }
        try Require.that(methods.count * levels.count <= 10_000, "levels", nil, "{levels} × {methods} make over 10,000 cells")
        try Require.part("perplexity") { try perplexity.validate() }
        try Require.part("calibration") { try calibration.validate() }
    }
}
