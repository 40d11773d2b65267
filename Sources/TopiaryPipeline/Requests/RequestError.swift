import Foundation

/// A request that cannot run, named by the key of the value at fault (`ratio`, `calibration.windows`,
/// `prune.mode`): a recipe shows it at that key's line and column, the command line as the option that sets it.
/// `rule` may name other keys of the same request as `{key}`; each face writes them its own way. Without a `value`
/// the error is about a combination of settings: `rule` is the whole message, and a recipe shows it at the stage.
public struct RequestError: Error, Equatable, Sendable, LocalizedError {
    public var key: String
    public var value: String?
    public var rule: String

    public init(key: String, value: String? = nil, rule: String) {
        self.key = key
        self.value = value
        self.rule = rule
    }

    /// The same error inside a larger request (`windows` → `calibration.windows`).
    public func within(_ prefix: String) -> RequestError {
        RequestError(key: prefix + "." + key, value: value, rule: Self.mapReferences(rule) { "{" + prefix + "." + $0 + "}" })
    }

    /// The message with every key written by `name` (a recipe path, a command-line flag).
    /// `valueSeparator` goes between the key and the value (a recipe's `key = value`, a command line's `--flag value`).
    public func describe(valueSeparator: String = " ", _ name: (String) -> String) -> String {
        guard let value else { return Self.mapReferences(rule, name) }
        return name(key) + valueSeparator + value + (rule.first == ":" ? "" : " ") + Self.mapReferences(rule, name)
    }

    /// The message with bare keys (tests, logs).
    public var errorDescription: String? { describe { $0 } }

    /// Every `{key}` of `text`, replaced by `f(key)`.
    static func mapReferences(_ text: String, _ f: (String) -> String) -> String {
        var out = "", rest = Substring(text)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            out += rest[..<open]
            out += f(String(rest[rest.index(after: open)..<close]))
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }
}

/// The checks requests are made of.
enum Require {
    static func that(_ ok: Bool, _ key: String, _ value: Any? = nil, _ rule: String) throws {
        guard ok else { throw RequestError(key: key, value: value.map { "\($0)" }, rule: rule) }
    }

    static func inRange<T: Comparable>(_ v: T, _ key: String, _ range: ClosedRange<T>) throws {
        try that(range.contains(v), key, v, "is out of range (\(range.lowerBound)…\(range.upperBound))")
    }

    static func atLeast<T: Comparable>(_ v: T, _ key: String, _ low: T) throws {
        try that(v >= low, key, v, "must be at least \(low)")
    }

    /// `low ≤ v < high`.
    static func halfOpen(_ v: Double, _ key: String, _ low: Double, _ high: Double) throws {
        try that(v.isFinite, key, v, "must be a finite number")
        try that(v >= low, key, v, "must be ≥ \(low)")
        try that(v < high, key, v, "must be < \(high)")
    }

    /// Checks of a part of a request, with its keys under `prefix`.
    static func part(_ prefix: String, _ body: () throws -> Void) throws {
        do { try body() } catch let e as RequestError { throw e.within(prefix) }
    }
}
