import Foundation
import TopiaryCore
import Yams

/// A problem in a recipe, located at a line and column of its file.
public struct RecipeError: Error, LocalizedError, Equatable {
    public var file: String
    public var line: Int?
    public var column: Int?
    public var message: String

    public init(file: String, line: Int? = nil, column: Int? = nil, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    public var errorDescription: String? {
        var at = file
        if let line { at += ":\(line)" + (column.map { ":\($0)" } ?? "") }
        return "\(at): \(message)"
    }
}

/// Edit distance, for "did you mean …?" suggestions.
func levenshtein(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count), current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}

/// The closest of `candidates` to `word`, when it is close enough to be a plausible typo.
func suggestion(for word: String, among candidates: [String]) -> String? {
    let lower = word.lowercased()
    let scored = candidates.map { ($0, levenshtein(lower, $0.lowercased())) }.min { $0.1 < $1.1 }
    guard let (best, distance) = scored, distance <= max(2, best.count / 3) else { return nil }
    return best
}

func didYouMean(_ word: String, _ candidates: [String]) -> String {
    if let s = suggestion(for: word, among: candidates) { return " (did you mean `\(s)`?)" }
    return " (expected one of: \(candidates.joined(separator: ", ")))"
}

/// Reads one YAML mapping of a recipe with typed accessors; every key read is remembered so that
/// `finish()` can report keys nobody asked for (typos) at their own line and column.
struct MappingReader {
    let file: String
    let path: String
    let node: Node?
    private(set) var pairs: [(key: String, keyNode: Node, value: Node)] = []
    private var used: Set<String> = []

    init(_ node: Node?, file: String, path: String) throws {
        self.file = file
        self.path = path
        self.node = node
        guard let node else { return }
        switch node {
        case .mapping(let mapping):
            for (k, v) in mapping {
                guard let key = k.string else {
                    throw RecipeError(file: file, line: k.mark?.line, column: k.mark?.column, message: "keys of \(path) must be strings")
                }
                if pairs.contains(where: { $0.key == key }) {
                    throw RecipeError(file: file, line: k.mark?.line, column: k.mark?.column, message: "duplicate key `\(key)` in \(path)")
                }
                pairs.append((key, k, v))
            }
        default:
            if Self.isNull(node) { return }
            throw RecipeError(
                file: file, line: node.mark?.line, column: node.mark?.column,
                message: "\(path) must be a mapping of keys to values, found \(Self.describe(node))")
        }
    }

    func error(at node: Node?, _ message: String) -> RecipeError {
        RecipeError(
            file: file, line: node?.mark?.line ?? self.node?.mark?.line, column: node?.mark?.column ?? self.node?.mark?.column,
            message: message)
    }

    var keys: [String] { pairs.map(\.key) }

    mutating func value(_ key: String) -> Node? {
        used.insert(key)
        return pairs.first { $0.key == key }?.value
    }

    func keyNode(_ key: String) -> Node? { pairs.first { $0.key == key }?.keyNode }

    static func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let s): return "'\(s.string)'"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    func describe(_ node: Node) -> String { Self.describe(node) }
    func isNull(_ node: Node) -> Bool { Self.isNull(node) }

    static func isNull(_ node: Node) -> Bool {
        if case .scalar(let s) = node { return s.string == "~" || s.string == "null" || (s.string.isEmpty && s.style == .plain) }
        return false
    }

    mutating func string(_ key: String) throws -> String? {
        guard let v = value(key), !isNull(v) else { return nil }
        guard case .scalar(let s) = v else { throw error(at: v, "\(path).\(key) must be a string, found \(describe(v))") }
        return s.string
    }

    mutating func int(_ key: String, range: ClosedRange<Int>? = nil) throws -> Int? {
        guard let v = value(key), !isNull(v) else { return nil }
        guard case .scalar(let s) = v, let i = Int(s.string.replacingOccurrences(of: "_", with: "")) else {
            throw error(at: v, "\(path).\(key) must be an integer, found \(describe(v))")
        }
        if let range, !range.contains(i) {
            throw error(at: v, "\(path).\(key) = \(i) is out of range (\(range.lowerBound)…\(range.upperBound))")
        }
        return i
    }

    mutating func double(_ key: String, min lo: Double? = nil, max hi: Double? = nil, openUpper: Bool = false) throws -> Double? {
        guard let v = value(key), !isNull(v) else { return nil }
        guard case .scalar(let s) = v, let d = Double(s.string.replacingOccurrences(of: "_", with: "")), d.isFinite else {
            throw error(at: v, "\(path).\(key) must be a number, found \(describe(v))")
        }
        if let lo, d < lo { throw error(at: v, "\(path).\(key) = \(s.string) must be ≥ \(lo)") }
        if let hi, openUpper ? d >= hi : d > hi {
            throw error(at: v, "\(path).\(key) = \(s.string) must be \(openUpper ? "<" : "≤") \(hi)")
        }
        return d
    }

    mutating func bool(_ key: String) throws -> Bool? {
        guard let v = value(key), !isNull(v) else { return nil }
        guard case .scalar(let s) = v,
            let b = ["true": true, "yes": true, "on": true, "false": false, "no": false, "off": false][s.string.lowercased()]
        else {
            throw error(at: v, "\(path).\(key) must be true or false, found \(describe(v))")
        }
        return b
    }

    /// A value from a fixed set, with a suggestion when it is a near miss.
    mutating func choice(_ key: String, _ allowed: [String]) throws -> String? {
        guard let s = try string(key) else { return nil }
        guard allowed.contains(s) else {
            throw error(at: value(key), "\(path).\(key): unknown value `\(s)`" + didYouMean(s, allowed))
        }
        return s
    }

    /// A list of strings; a single comma-separated string is accepted too.
    mutating func stringList(_ key: String, allowed: [String]? = nil) throws -> [String]? {
        guard let v = value(key), !isNull(v) else { return nil }
        var items: [(String, Node)] = []
        switch v {
        case .scalar(let s):
            items = s.string.split(separator: ",").map { (String($0).trimmingCharacters(in: .whitespaces), v) }
        case .sequence(let seq):
            for item in seq {
                guard case .scalar(let s) = item else {
                    throw error(at: item, "\(path).\(key) must be a list of strings, found \(describe(item))")
                }
                items.append((s.string, item))
            }
        default:
            throw error(at: v, "\(path).\(key) must be a list of strings, found \(describe(v))")
        }
        if let allowed {
            for (s, n) in items where !allowed.contains(s) {
                throw error(at: n, "\(path).\(key): unknown value `\(s)`" + didYouMean(s, allowed))
            }
        }
        return items.map(\.0)
    }

    mutating func doubleList(_ key: String) throws -> [Double]? {
        guard let v = value(key), !isNull(v) else { return nil }
        guard case .sequence(let seq) = v, !seq.isEmpty else { throw error(at: v, "\(path).\(key) must be a non-empty list of numbers") }
        return try seq.map { item in
            guard case .scalar(let s) = item, let d = Double(s.string), d.isFinite else {
                throw error(at: item, "\(path).\(key) must be a list of numbers, found \(describe(item))")
            }
            return d
        }
    }

    mutating func mapping(_ key: String) throws -> MappingReader? {
        guard let v = value(key) else { return nil }
        return try MappingReader(isNull(v) ? nil : v, file: file, path: path + "." + key)
    }

    /// Reports the first key that was never read, with a suggestion among the keys that were.
    func finish() throws {
        RecipeSchema.note(path: path, keys: used)
        let known = Array(used).sorted()
        for p in pairs where !used.contains(p.key) {
            throw RecipeError(
                file: file, line: p.keyNode.mark?.line, column: p.keyNode.mark?.column,
                message: "unknown key `\(p.key)` in \(path)" + didYouMean(p.key, known))
        }
    }
}

extension Recipe {
    /// A request's error in recipe terms: its keys as paths under `prefix` (`stages.prune.ratio = 1.5 must be < 1.0`),
    /// located at the value at fault, or at the stage for a combination of settings.
    static func located(_ e: RequestError, under prefix: String, root: Node, file: String) -> RecipeError {
        let path = (prefix + "." + e.key).split(separator: ".").map(String.init)
        func child(_ node: Node?, _ key: String) -> Node? {
            guard case .mapping(let m)? = node else { return nil }
            return m.first { $0.key.string == key }?.value
        }
        func keyNode(_ node: Node?, _ key: String) -> Node? {
            guard case .mapping(let m)? = node else { return nil }
            return m.first { $0.key.string == key }?.key
        }
        // The stage's key (`stages.prune`), then the value's node as deep as the file has it.
        var at: Node? = path.count >= 2 ? keyNode(child(root, path[0]), path[1]) : nil
        if e.value != nil {
            var node: Node? = root
            for k in path {
                guard let next = child(node, k) else { break }
                node = next
                at = next
            }
        }
        let message = e.describe(valueSeparator: " = ") { prefix + "." + $0 }
        return RecipeError(
            file: file, line: at?.mark?.line ?? root.mark?.line, column: at?.mark?.column ?? root.mark?.column, message: message)
    }
}

/// Every key each mapping of a recipe knows (`recipe`, `stages.prune`, `stages.importance.calibration`, …), as the
/// readers asked for them while parsing: the recipe side of the option ⇔ key comparison.
public enum RecipeSchema {
    static let recorded = Locked<[String: Set<String>]>([:])

    static func note(path: String, keys: Set<String>) { recorded.update { $0[path, default: []].formUnion(keys) } }

    /// The keys seen so far by path (parse a recipe that has every stage to see them all).
    public static var keys: [String: Set<String>] { recorded.value }
}
