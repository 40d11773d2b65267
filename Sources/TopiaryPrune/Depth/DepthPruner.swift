import Foundation
import TopiaryCore
import TopiaryGraph
import TopiaryModels

/// The record of a depth prune (`pruning.json`'s `blocks`): every block's score and which went.
public struct BlockRemoval: Codable, Sendable, Equatable {
    public var criterion: String
    /// `iterative` (one block at a time, the rest rescored after each) or `one-shot`.
    public var selection: String
    /// One score per layer of the model before the removal (higher = more important).
    public var scores: [Double]
    /// The removed layers, by their index before the removal, in the order they went.
    public var order: [Int]
    public var parametersRemoved: Int

    public init(criterion: String, selection: BlockSelection, scores: [Double], order: [Int], parametersRemoved: Int) {
        self.criterion = criterion
        self.selection = selection.rawValue
        self.scores = scores
        self.order = order
        self.parametersRemoved = parametersRemoved
    }

    enum CodingKeys: String, CodingKey {
        case criterion, selection, scores, order, removed
        case parametersRemoved = "parameters_removed"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        criterion = try c.decode(String.self, forKey: .criterion)
        selection = try c.decode(String.self, forKey: .selection)
        scores = try c.decode([Double].self, forKey: .scores)
        order = try c.decode([Int].self, forKey: .order)
        parametersRemoved = try c.decode(Int.self, forKey: .parametersRemoved)
    }

    /// Written with ``removed`` too (ascending, for readers of `pruning.json`); read back from ``order``.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(criterion, forKey: .criterion)
        try c.encode(selection, forKey: .selection)
        try c.encode(scores, forKey: .scores)
        try c.encode(order, forKey: .order)
        try c.encode(removed, forKey: .removed)
        try c.encode(parametersRemoved, forKey: .parametersRemoved)
    }

    /// The removed layers, by their index before the removal, ascending.
    public var removed: [Int] { order.sorted() }

    /// The layers kept, by their index before the removal (their new index is their position here).
    public var kept: [Int] { (0..<scores.count).filter { !removed.contains($0) } }
}

/// How the blocks to remove are chosen from their scores.
public enum BlockSelection: String, CaseIterable, Codable, Sendable {
    /// The `count` lowest of one scoring of the whole model (ShortGPT, Shortened LLaMA; the default: one scoring, and
    /// rescoring did not help consistently — BENCHMARKS.md, "Depth pruning").
    case oneShot = "one-shot"
    /// One block at a time, the others rescored on the shallower model after each removal (the perplexity criterion
    /// gains from it, at `count` times its cost).
    case iterative

    public static let `default` = BlockSelection.oneShot
}

/// Removes whole decoder blocks: scores every block by a ``BlockCriterion`` on the calibration windows and takes out
/// the `count` lowest, at once or one at a time (``BlockSelection``).
public enum DepthPruner {
    /// The `count` layers with the lowest scores (ties: the later layer first), ascending.
    public static func lowest(_ scores: [Double], count: Int) -> [Int] {
        Array(scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] < scores[$1] : $0 > $1 }.prefix(count)).sorted()
    }

    /// Checks `count` against a model of `layerCount` layers.
    public static func check(count: Int, layerCount: Int) throws {
        guard (1..<layerCount).contains(count) else {
            throw PruneError.notApplicable(
                "--blocks \(count): the model has \(layerCount) blocks; remove 1 to \(layerCount - 1) (at least one must stay)")
        }
    }

    /// The parameters that removing `layers` takes out of `model`.
    public static func parameters(of layers: [Int], in model: DecoderModel) -> Int {
        layers.reduce(0) { sum, l in sum + model.layers[l].all.reduce(0) { $0 + $1.count } }
    }

    /// Scores the blocks of `model` and removes `count` of them in place. `budget`, when given, is the most parameters
    /// the removal may take (the plan's whole budget): a count that cannot fit is refused before any work.
    public static func run(
        model: DecoderModel, count: Int, criterion: BlockCriterionName, selection: BlockSelection = .default,
        calibration: CalibrationSet, budget: Int? = nil, progress: (_ step: Int, _ blocks: Int) -> ProgressBar? = { _, _ in nil }
    ) throws -> BlockRemoval {
        try check(count: count, layerCount: model.config.layerCount)
        let smallest = model.layers.indices.map { parameters(of: [$0], in: model) }.sorted().prefix(count).reduce(0, +)
        if let budget, smallest > budget { throw overBudget(count, smallest, budget) }
        var kept = Array(model.layers.indices)
        var first: [Double] = []
        var order: [Int] = []
        var removedParameters = 0
        let steps = selection == .iterative ? count : 1
        for step in 0..<steps {
            let scores = try criterion.implementation.scores(
                model: model, calibration: calibration, progress: progress(step, model.config.layerCount))
            guard scores.count == model.config.layerCount, scores.allSatisfy(\.isFinite) else {
                throw PruneError.notApplicable("block criterion \(criterion): a block's score is not a finite number")
            }
            if step == 0 { first = scores }
            let local = lowest(scores, count: selection == .iterative ? 1 : count)
            removedParameters += parameters(of: local, in: model)
            if let budget, removedParameters > budget { throw overBudget(count, removedParameters, budget) }
            // In the order they go: one-shot ranks by score.
            order += local.sorted { scores[$0] < scores[$1] }.map { kept[$0] }
            try model.removeLayers(Set(local))
            kept = kept.enumerated().filter { !local.contains($0.offset) }.map(\.element)
        }
        return BlockRemoval(
            criterion: criterion.rawValue, selection: selection, scores: first, order: order, parametersRemoved: removedParameters)
    }

    static func overBudget(_ count: Int, _ parameters: Int, _ budget: Int) -> PruneError {
        .notApplicable(
            "--blocks \(count) remove \(parameters.formatted()) parameters, more than the --ratio budget of \(budget.formatted()): "
                + "raise --ratio, remove fewer blocks, or leave --ratio out for depth alone")
    }

    /// The layer range `range` (indices before the removal) among the kept layers, renumbered; nil when none of it is
    /// kept. Kept layers inside a range are consecutive after renumbering, so the result is a range.
    public static func keptRange(_ range: ClosedRange<Int>, kept: [Int]) -> ClosedRange<Int>? {
        let inside = kept.indices.filter { range.contains(kept[$0]) }
        guard let first = inside.first, let last = inside.last else { return nil }
        return first...last
    }

    /// Scores of the groups of the model before the removal (`old`, by group id) carried to the groups of the same
    /// kind in the same kept layer of the model after it (`new`).
    public static func carry(
        _ scores: [Int: [Double]], from old: DependencyGraph, to new: DependencyGraph, kept: [Int]
    ) -> [Int: [Double]] {
        var byLayer: [String: Int] = [:]
        for g in old.groups { if let l = g.layer { byLayer["\(g.kind)@\(l)"] = g.id } }
        var carried: [Int: [Double]] = [:]
        for g in new.groups {
            guard let l = g.layer, l < kept.count, let id = byLayer["\(g.kind)@\(kept[l])"], let s = scores[id] else { continue }
            carried[g.id] = s
        }
        return carried
    }
}
