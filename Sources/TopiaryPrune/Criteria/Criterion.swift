import Foundation
import TopiaryAutodiff
import TopiaryCore
import TopiaryGraph
import TopiaryModels

/// What a criterion reads before it can score; ``ImportanceScoring`` gathers exactly this on the calibration windows.
public struct CriterionNeeds: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// ∂L/∂w over all calibration windows in one backward (`grad` of each ranked parameter).
    public static let gradients = CriterionNeeds(rawValue: 1)
    /// Per-window Fisher sums ½Σₛ(w·∂Lₛ/∂w)², one backward per window.
    public static let fisher = CriterionNeeds(rawValue: 2)
    /// Σₜ x² per input column of each ranked linear (one forward, no tape).
    public static let activations = CriterionNeeds(rawValue: 4)
    /// Units are chosen layer by layer while pruning, on the inputs that pass through the already-pruned layers.
    public static let sequential = CriterionNeeds(rawValue: 8)
    /// Scores come from a training run on the calibration windows.
    public static let learned = CriterionNeeds(rawValue: 16)

    /// True when anything is read from calibration windows.
    public var readsCalibration: Bool { !isEmpty }
}

/// The settings some criteria take; the one place for their defaults.
public struct CriterionOptions: Codable, Sendable, Equatable {
    /// `taylor-act`: weight of the activation-energy term against the Taylor term.
    public var lambda = 1.0
    /// `taylor-act`: 2 for the second-order Fisher Taylor term, 1 for element-wise first order.
    public var taylorOrder = 2
    /// `random`'s seed and the learned criteria's.
    public var seed: UInt64 = 0
    /// `variational-dropout`: steps, windows per step, Adam learning rate on log α, KL weight.
    public var vdSteps = 100
    public var vdWindows = 4
    public var vdLearningRate = 0.1
    public var vdKLWeight = 1.0
    /// `obs`: MLP channels removed per greedy step before the rest are rescored.
    public var obsStep = 16

    public init() {}

    /// Refuses values no criterion can use (names the recipe key / option).
    public func validate() throws {
        guard taylorOrder == 1 || taylorOrder == 2 else { throw PruneError.notApplicable("taylor order \(taylorOrder): expected 1 or 2") }
        guard vdSteps >= 1, vdWindows >= 1, vdLearningRate > 0, vdKLWeight >= 0 else {
            throw PruneError.notApplicable("variational dropout: steps and windows must be ≥ 1, learning rate > 0, KL weight ≥ 0")
        }
        guard obsStep >= 1 else { throw PruneError.notApplicable("obs step must be at least 1") }
        guard lambda.isFinite else { throw PruneError.notApplicable("lambda must be a finite number") }
    }
}

/// Statistics gathered on the calibration windows, by weight name.
public struct CriterionStatistics: @unchecked Sendable {
    public var fisher: [String: Tensor] = [:]
    public var activations: [String: Tensor] = [:]
    public init(fisher: [String: Tensor] = [:], activations: [String: Tensor] = [:]) {
        self.fisher = fisher
        self.activations = activations
    }
}

/// An importance criterion: how a unit's importance is measured (higher = more important = kept).
///
/// Adding one is one file with a conforming type plus one line in ``Criteria/all``; `prune`, recipes and sweeps take
/// it by name, and ``ImportanceScoring`` gathers what ``needs(_:)`` declares.
public protocol Criterion: Sendable {
    /// The name users type (`--importance NAME`, `criterion: NAME`, sweep method `structured-NAME`).
    var name: String { get }
    /// One line for `--help`.
    var summary: String { get }
    /// Whether sweeps offer it as `structured-NAME`.
    var inSweeps: Bool { get }
    func needs(_ options: CriterionOptions) -> CriterionNeeds
    /// One score per unit of `group`.
    func scores(
        for group: PruningGroup, parameters: [String: Parameter], statistics: CriterionStatistics,
        options: CriterionOptions, aggregation: Aggregation
    ) throws -> [Double]
}

extension Criterion {
    public var inSweeps: Bool { true }
}

/// A criterion that scores each member tensor per index of its axis, sums those over a unit's channels, and combines
/// the members by the aggregation.
public protocol ChannelCriterion: Criterion {
    /// One value per index of `axis` of `p`.
    func channelScores(_ p: Parameter, axis: Int, statistics: CriterionStatistics, options: CriterionOptions) throws -> [Double]
    /// A member's unit score from the sum of its channels (identity unless overridden).
    func unitScore(_ sum: Double) -> Double
}

extension ChannelCriterion {
    public func unitScore(_ sum: Double) -> Double { sum }

    public func scores(
        for group: PruningGroup, parameters: [String: Parameter], statistics: CriterionStatistics,
        options: CriterionOptions, aggregation: Aggregation
    ) throws -> [Double] {
        var perMember: [[Double]] = []
        for m in group.members {
            guard let p = parameters[m.tensor] else { throw PruneError.unknownTensor(m.tensor) }
            let channel = try channelScores(p, axis: m.axis, statistics: statistics, options: options)
            perMember.append((0..<group.units).map { u in unitScore(m.channels(ofUnit: u).reduce(0) { $0 + channel[$1] }) })
        }
        return (0..<group.units).map { u in aggregation.combine(perMember.map { $0[u] }) }
    }
}

/// The registry of criteria: the one list of them.
public enum Criteria {
    public static let all: [any Criterion] = [
        TaylorCriterion(), TaylorVectorCriterion(), Taylor2Criterion(), L1Criterion(), L2Criterion(), RandomCriterion(),
        TaylorActivationCriterion(), OBSCriterion(), VariationalDropoutCriterion(), WandaSPCriterion(),
    ]

    public static func named(_ name: String) -> (any Criterion)? { all.first { $0.name == name } }
    public static var names: [String] { all.map(\.name) }
}

/// A criterion by name: what requests, recipes and the command line carry. Only registered names exist.
public struct ImportanceCriterion: RegisteredName {
    public static var registeredNames: [String] { Criteria.names }
    public static var kindName: String { "criterion" }
    public let rawValue: String

    public init?(rawValue: String) {
        guard Criteria.named(rawValue) != nil else { return nil }
        self.rawValue = rawValue
    }

    public var implementation: any Criterion { Criteria.named(rawValue)! }
    public func needs(_ options: CriterionOptions = CriterionOptions()) -> CriterionNeeds { implementation.needs(options) }
    /// True when the criterion reads calibration windows with its default settings.
    public var needsCalibration: Bool { needs().readsCalibration }
}
