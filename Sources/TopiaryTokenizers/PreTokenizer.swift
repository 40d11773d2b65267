import Foundation

/// Splits text into the pieces that BPE encodes separately.
///
/// - `gpt2` (also `default`): GPT-2's regex
///   `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, matched by hand over
///   Unicode scalars.
/// - `smollm`: every digit (`\p{N}`) is first isolated, then each remaining piece is split by the GPT-2
///   rule — SmolLM2's original `Sequence[Digits(individual_digits), ByteLevel]`.
/// - `qwen2` (also `deepseek-r1-qwen`) and `llama3` (also `llama-bpe`): the LLaMA-3 / Qwen2 regex
///   `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,K}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
///   with K = 1 (Qwen2) or 3 (LLaMA 3), as llama.cpp's `llama-vocab.cpp` names them.
public struct PreTokenizer: Sendable {
    public let name: String
    let isolateDigits: Bool
    /// Digits per number piece of the LLaMA-3-style rule; 0 when the GPT-2 rule applies.
    let digitRun: Int

    public static let supported = ["gpt2", "default", "smollm", "qwen2", "deepseek-r1-qwen", "llama3", "llama-bpe"]

    /// The `Split` regex of LLaMA 3's `tokenizer.json` (numbers in runs of up to three digits).
    public static let llama3Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    /// The `Split` regex of Qwen2's `tokenizer.json` (one digit per number piece).
    public static let qwen2Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    public init(name: String, source: String = "tokenizer") throws {
        switch name {
        case "gpt2", "default": isolateDigits = false; digitRun = 0
        case "smollm": isolateDigits = true; digitRun = 0
        case "qwen2", "deepseek-r1-qwen": isolateDigits = false; digitRun = 1
        case "llama3", "llama-bpe": isolateDigits = false; digitRun = 3
        default: throw TokenizerError.unknownPreTokenizer(source: source, name: name)
        }
        self.name = name
    }

    enum Class: UInt8 { case letter, number, space, other }

    static let asciiClass: [Class] = (0..<128).map { slowClassify(Unicode.Scalar(UInt8($0))) }

    static func slowClassify(_ s: Unicode.Scalar) -> Class {
        let p = s.properties
        if p.isWhitespace { return .space }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    /// Pieces of `scalars` as index ranges.
    public func split(_ scalars: [Unicode.Scalar]) -> [Range<Int>] {
        let classes = scalars.map { $0.value < 128 ? Self.asciiClass[Int($0.value)] : Self.slowClassify($0) }
        var pieces: [Range<Int>] = []
        pieces.reserveCapacity(scalars.count / 3)
        if digitRun > 0 {
            llama3(scalars, classes, into: &pieces)
        } else if isolateDigits {
            var start = 0
            for i in 0..<scalars.count where classes[i] == .number {
                if start < i { gpt2(scalars, classes, start..<i, into: &pieces) }
                pieces.append(i..<(i + 1))
                start = i + 1
            }
            if start < scalars.count { gpt2(scalars, classes, start..<scalars.count, into: &pieces) }
        } else {
            gpt2(scalars, classes, 0..<scalars.count, into: &pieces)
        }
        return pieces
    }

    /// The GPT-2 regex over `range`, treating the range's end as the end of the text.
    func gpt2(_ s: [Unicode.Scalar], _ c: [Class], _ range: Range<Int>, into pieces: inout [Range<Int>]) {
        let end = range.upperBound
        var i = range.lowerBound
        func run(from j: Int, _ cls: Class) -> Int {
            var k = j
            while k < end && c[k] == cls { k += 1 }
            return k
        }
        while i < end {
            let ch = s[i]
            // Contractions: 's 't 're 've 'm 'll 'd
            if ch == "'" && i + 1 < end {
                let a = s[i + 1]
                if a == "s" || a == "t" || a == "m" || a == "d" { pieces.append(i..<(i + 2)); i += 2; continue }
                if i + 2 < end {
                    let b = s[i + 2]
                    if (a == "r" && b == "e") || (a == "v" && b == "e") || (a == "l" && b == "l") {
                        pieces.append(i..<(i + 3)); i += 3; continue
                    }
                }
            }
            var j = i
            if ch == " " && i + 1 < end && c[i + 1] != .space { j = i + 1 }  // optional leading space
            switch c[j] {
            case .letter, .number:
                let k = run(from: j, c[j])
                pieces.append(i..<k)
                i = k
            case .other:
                let k = run(from: j, .other)
                pieces.append(i..<k)
                i = k
            case .space:
                // \s+(?!\S) then \s+
                let k = run(from: i, .space)
                if k == end || k - i == 1 {
                    pieces.append(i..<k)
                    i = k
                } else {
                    pieces.append(i..<(k - 1))
                    i = k - 1
                }
            }
        }
    }

    /// The LLaMA-3 / Qwen2 rule, alternatives tried in the regex's order at each position.
    func llama3(_ s: [Unicode.Scalar], _ c: [Class], into pieces: inout [Range<Int>]) {
        let end = s.count
        func isNewline(_ i: Int) -> Bool { s[i] == "\r" || s[i] == "\n" }
        func lower(_ x: Unicode.Scalar) -> Unicode.Scalar { x.value >= 65 && x.value <= 90 ? Unicode.Scalar(x.value + 32)! : x }
        func run(from j: Int, _ cls: Class) -> Int {
            var k = j
            while k < end && c[k] == cls { k += 1 }
            return k
        }
        var i = 0
        while i < end {
            let ch = s[i]
            // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            if ch == "'" && i + 1 < end {
                let a = lower(s[i + 1])
                if a == "s" || a == "t" || a == "m" || a == "d" { pieces.append(i..<(i + 2)); i += 2; continue }
                if i + 2 < end {
                    let b = lower(s[i + 2])
                    if (a == "r" && b == "e") || (a == "v" && b == "e") || (a == "l" && b == "l") {
                        pieces.append(i..<(i + 3)); i += 3; continue
                    }
                }
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if c[i] == .letter { let k = run(from: i, .letter); pieces.append(i..<k); i = k; continue }
            if c[i] != .number && !isNewline(i) && i + 1 < end && c[i + 1] == .letter {
                let k = run(from: i + 1, .letter); pieces.append(i..<k); i = k; continue
            }
            // \p{N}{1,K}
            if c[i] == .number {
                var k = i
                while k < end && k - i < digitRun && c[k] == .number { k += 1 }
                pieces.append(i..<k); i = k; continue
            }
            // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            let j = (ch == " " && i + 1 < end && c[i + 1] == .other) ? i + 1 : i
            if c[j] == .other {
                var k = run(from: j, .other)
                while k < end && isNewline(k) { k += 1 }
                pieces.append(i..<k); i = k; continue
            }
            // Whitespace: \s*[\r\n]+ (up to the run's last newline), then \s+(?!\S), then \s+.
            let k = run(from: i, .space)
            if let lastNewline = (i..<k).last(where: isNewline) {
                pieces.append(i..<(lastNewline + 1)); i = lastNewline + 1; continue
            }
            if k == end || k - i == 1 { pieces.append(i..<k); i = k } else { pieces.append(i..<(k - 1)); i = k - 1 }
        }
    }
}
