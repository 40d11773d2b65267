import Foundation

/// One of `count` processes that share a grid's cells (a sweep's methods × levels): shard `index` (1-based) computes
/// the cells whose position in the grid is `index − 1` modulo `count`, so the split is deterministic and two shards
/// never compute the same cell. Batch engines start the shards: a Slurm job array or a Kubernetes Indexed Job.
public struct Shard: Codable, Sendable, Equatable, CustomStringConvertible {
    public let index: Int
    public let count: Int

    public static let maxCount = 100_000

    public init(index: Int, count: Int) throws {
        try Require.inRange(count, "shard", 1...Self.maxCount)
        try Require.that(
            (1...count).contains(index), "shard", "\(index)/\(count)", "must be I/N with 1 ≤ I ≤ N (shard I of N; e.g. 2/4)")
        self.index = index
        self.count = count
    }

    /// `I/N` (e.g. `2/4`).
    public init(parsing text: String) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 2, let i = parts[0], let n = parts[1] else {
            throw RequestError(key: "shard", value: text, rule: "must be I/N with 1 ≤ I ≤ N (shard I of N; e.g. 2/4)")
        }
        try self.init(index: i, count: n)
    }

    public var description: String { "\(index)/\(count)" }

    /// Whether the cell at `position` (0-based, in grid order) is this shard's.
    public func owns(_ position: Int) -> Bool { position % count == index - 1 }

    /// The shard a batch engine's task is: a Slurm array task (`SLURM_ARRAY_TASK_ID` counted from
    /// `SLURM_ARRAY_TASK_MIN`, of `SLURM_ARRAY_TASK_COUNT`), or a Kubernetes Indexed Job's pod (`JOB_COMPLETION_INDEX`,
    /// from 0, of `TOPIARY_SHARD_COUNT`, which the Job's manifest sets to its `completions`). Nil outside them.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws -> Shard? {
        func number(_ key: String) throws -> Int? {
            guard let v = env[key] else { return nil }
            guard let n = Int(v) else { throw RequestError(key: "shard", value: nil, rule: "\(key)=\(v) is not a number") }
            return n
        }
        if let id = try number("SLURM_ARRAY_TASK_ID") {
            guard let count = try number("SLURM_ARRAY_TASK_COUNT") else {
                throw RequestError(key: "shard", value: nil, rule: "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")
            }
            return try Shard(index: id - (try number("SLURM_ARRAY_TASK_MIN") ?? 1) + 1, count: count)
        }
        if let index = try number("JOB_COMPLETION_INDEX") {
            guard let count = try number("TOPIARY_SHARD_COUNT") else {
                throw RequestError(
                    key: "shard", value: nil,
                    rule: "JOB_COMPLETION_INDEX is set but TOPIARY_SHARD_COUNT is not (set it to the Job's completions)")
            }
            return try Shard(index: index + 1, count: count)
        }
        return nil
    }
}
