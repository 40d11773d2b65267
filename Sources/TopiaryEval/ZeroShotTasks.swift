import Foundation
import TopiaryCore

/// One multiple-choice item as lm-evaluation-harness builds it: one context per choice (usually the same),
/// the continuation scored after each, and the gold index.
public struct MultipleChoiceItem: Sendable, Equatable {
    public var contexts: [String]
    public var continuations: [String]
    /// The choice strings whose character counts normalise `acc_norm` (lm-eval's `len(choice)`).
    public var choiceTexts: [String]
    public var gold: Int
}

/// A zero-shot task: where its file is and how each line becomes an item.
public protocol EvaluationTask: Sendable {
    var name: String { get }
    /// The file under the zero-shot data folder.
    var fileName: String { get }
    /// Whether lm-eval reports `acc_norm` for it.
    var reportsAccNorm: Bool { get }
    func items(from path: String, limit: Int?) throws -> [MultipleChoiceItem]
}

/// Errors of task files. Each names the file (and line).
public enum TaskError: Error, LocalizedError, Equatable {
    case unknownTask(String, known: [String])
    case missingFile(String)
    case malformed(path: String, line: Int, detail: String)
    case empty(String)

    public var errorDescription: String? {
        switch self {
        case let .unknownTask(t, known): return "unknown task '\(t)' (known: \(known.joined(separator: ", ")))"
        case let .missingFile(p): return "\(p): task file not found"
        case let .empty(p): return "\(p): the task file has no items (it is empty or holds only blank lines)"
        case let .malformed(p, line, d): return "\(p):\(line): \(d)"
        }
    }
}

/// The seven tasks of the LLM-Pruner / Wanda tables, with lm-evaluation-harness's prompts.
public enum ZeroShotTasks {
    public static let all: [any EvaluationTask] = [
        BoolQ(), PIQA(), HellaSwag(), WinoGrande(), ARC(challenge: false), ARC(challenge: true), OpenBookQA(),
    ]
    public static var names: [String] { all.map(\.name) }

    public static func task(named name: String) throws -> any EvaluationTask {
        guard let t = all.first(where: { $0.name == name }) else { throw TaskError.unknownTask(name, known: names) }
        return t
    }

    /// JSON lines of a file, each parsed to an object, with line numbers in errors.
    static func jsonLines(_ path: String, limit: Int?) throws -> [(line: Int, object: [String: Any])] {
        guard let data = readWholeFile(path) else { throw TaskError.missingFile(path) }
        var out: [(Int, [String: Any])] = []
        for (i, raw) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            if let limit, out.count >= limit { break }
            if raw.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { continue }
            guard let obj = try? JSONSerialization.jsonObject(with: Data(raw)) as? [String: Any] else {
                throw TaskError.malformed(path: path, line: i + 1, detail: "not a JSON object")
            }
            out.append((i + 1, obj))
        }
        // An empty task would count as 0 % in every average: it is an error, not a result.
        guard !out.isEmpty || limit == 0 else { throw TaskError.empty(path) }
        return out
    }

    static func field<T>(_ obj: [String: Any], _ key: String, _ path: String, _ line: Int) throws -> T {
        guard let v = obj[key] as? T else { throw TaskError.malformed(path: path, line: line, detail: "missing or invalid '\(key)'") }
        return v
    }

    /// ARC / OpenBookQA choices and the gold index found by looking `answerKey` up in the labels.
    static func choices(_ obj: [String: Any], _ path: String, _ line: Int) throws -> (stem: String, texts: [String], gold: Int) {
        let q: [String: Any] = try field(obj, "question", path, line)
        let stem: String = try field(q, "stem", path, line)
        let list: [[String: Any]] = try field(q, "choices", path, line)
        let texts = try list.map { (try field($0, "text", path, line) as String) }
        let labels = try list.map { (try field($0, "label", path, line) as String) }
        let key: String = try field(obj, "answerKey", path, line)
        guard let gold = labels.firstIndex(of: key.trimmingCharacters(in: .whitespaces)) else {
            throw TaskError.malformed(path: path, line: line, detail: "answerKey '\(key)' is not among the labels \(labels)")
        }
        return (stem, texts, gold)
    }
}

struct BoolQ: EvaluationTask {
    let name = "boolq", fileName = "boolq.jsonl", reportsAccNorm = false
    func items(from path: String, limit: Int?) throws -> [MultipleChoiceItem] {
        try ZeroShotTasks.jsonLines(path, limit: limit).map { line, o in
            let passage: String = try ZeroShotTasks.field(o, "passage", path, line)
            let question: String = try ZeroShotTasks.field(o, "question", path, line)
            let answer: Bool = try ZeroShotTasks.field(o, "answer", path, line)
            let ctx = "\(passage)\nQuestion: \(question)?\nAnswer:"
            return MultipleChoiceItem(
                contexts: [ctx, ctx], continuations: [" no", " yes"], choiceTexts: ["no", "yes"], gold: answer ? 1 : 0)
        }
    }
}

struct PIQA: EvaluationTask {
    let name = "piqa", fileName = "piqa.jsonl", reportsAccNorm = true
    func items(from path: String, limit: Int?) throws -> [MultipleChoiceItem] {
        try ZeroShotTasks.jsonLines(path, limit: limit).map { line, o in
            let goal: String = try ZeroShotTasks.field(o, "goal", path, line)
            let s1: String = try ZeroShotTasks.field(o, "sol1", path, line), s2: String = try ZeroShotTasks.field(o, "sol2", path, line)
            let label: Int = try ZeroShotTasks.field(o, "label", path, line)
            guard label == 0 || label == 1 else {
                throw TaskError.malformed(path: path, line: line, detail: "label \(label) is not 0 or 1")
            }
            let ctx = "Question: \(goal)\nAnswer:"
            return MultipleChoiceItem(contexts: [ctx, ctx], continuations: [" " + s1, " " + s2], choiceTexts: [s1, s2], gold: label)
        }
    }
}

/// HellaSwag from llama.cpp's derived text file (6 lines per item: context, gold, 4 endings), already
/// preprocessed as lm-eval's `preprocess` does, except that `ctx_b` is not capitalised.
struct HellaSwag: EvaluationTask {
    let name = "hellaswag", fileName = "hellaswag_val_full.llamacpp.txt", reportsAccNorm = true
    func items(from path: String, limit: Int?) throws -> [MultipleChoiceItem] {
        guard let data = readWholeFile(path) else { throw TaskError.missingFile(path) }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TaskError.malformed(path: path, line: 1, detail: "not UTF-8 text")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var items: [MultipleChoiceItem] = []
        var i = 0
        while i + 6 <= lines.count {
            if let limit, items.count >= limit { break }
            guard let gold = Int(lines[i + 1]), (0..<4).contains(gold) else {
                throw TaskError.malformed(path: path, line: i + 2, detail: "expected the gold ending index 0–3, found '\(lines[i + 1])'")
            }
            let endings = Array(lines[(i + 2)..<(i + 6)])
            items.append(
                MultipleChoiceItem(
                    contexts: Array(repeating: lines[i], count: 4), continuations: endings.map { " " + $0 },
                    choiceTexts: endings, gold: gold))
            i += 6
        }
        if limit == nil || items.count < limit!, i < lines.count, !lines[i...].allSatisfy({ $0.isEmpty }) {
            throw TaskError.malformed(path: path, line: i + 1, detail: "an incomplete item (fewer than 6 lines)")
        }
        return items
    }
}

/// WinoGrande with lm-eval's partial scoring: each option fills the blank in its own context and the
/// rest of the sentence is the scored continuation.
struct WinoGrande: EvaluationTask {
    let name = "winogrande", fileName = "winogrande.jsonl", reportsAccNorm = false
    func items(from path: String, limit: Int?) throws -> [MultipleChoiceItem] {
        try ZeroShotTasks.jsonLines(path, limit: limit).map { line, o in
            let sentence: String = try ZeroShotTasks.field(o, "sentence", path, line)
            let o1: String = try ZeroShotTasks.field(o, "option1", path, line),
                o2: String = try ZeroShotTasks.field(o, "option2", path, line)
            let answer: String = try ZeroShotTasks.field(o, "answer", path, line)
            guard let blank = sentence.firstIndex(of: "_"), let gold = ["1": 0, "2": 1][answer] else {
                throw TaskError.malformed(path: path, line: line, detail: "no '_' in the sentence or answer not 1/2")
            }
            let prefix = String(sentence[..<blank])
            let target = String(sentence[sentence.index(after: blank)...]).trimmingCharacters(in: .whitespaces)
            return MultipleChoiceItem(
                contexts: [prefix + o1, prefix + o2], continuations: [" " + target, " " + target],
                choiceTexts: [target, target], gold: gold)
        }
    }
}

struct ARC: EvaluationTask {
    let challenge: Bool
    var name: String { challenge ? "arc_challenge" : "arc_easy" }
    var fileName: String { challenge ? "arc_challenge.jsonl" : "arc_easy.jsonl" }
    let reportsAccNorm = true
    func items(from path: String, limit: Int?) throws -> [MultipleChoiceItem] {
        try ZeroShotTasks.jsonLines(path, limit: limit).map { line, o in
            let (stem, texts, gold) = try ZeroShotTasks.choices(o, path, line)
            let ctx = "Question: \(stem)\nAnswer:"
            return MultipleChoiceItem(
                contexts: texts.map { _ in ctx }, continuations: texts.map { " " + $0 }, choiceTexts: texts, gold: gold)
        }
    }
}

struct OpenBookQA: EvaluationTask {
    let name = "openbookqa", fileName = "openbookqa.jsonl", reportsAccNorm = true
    func items(from path: String, limit: Int?) throws -> [MultipleChoiceItem] {
        try ZeroShotTasks.jsonLines(path, limit: limit).map { line, o in
            let (stem, texts, gold) = try ZeroShotTasks.choices(o, path, line)
            return MultipleChoiceItem(
                contexts: texts.map { _ in stem }, continuations: texts.map { " " + $0 }, choiceTexts: texts, gold: gold)
        }
    }
}
