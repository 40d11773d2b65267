import Foundation

/// Splits text into the pieces that BPE encodes separately.
///
/// - `gpt2` (also `default`): GPT-2's regex
///   `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, matched by hand over
///   Unicode scalars.
/// - `smollm`: every digit (`\p{N}`) is first isolated, then each remaining piece is split by the GPT-2
///   rule — SmolLM2's original `Sequence[Digits(individual_digits), ByteLevel]`.
public struct PreTokenizer: Sendable {
    public let name: String
    let isolateDigits: Bool

    public static let supported = ["gpt2", "default", "smollm"]

    public init(name: String, source: String = "tokenizer") throws {
        switch name {
        case "gpt2", "default": isolateDigits = false
        case "smollm": isolateDigits = true
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
        if isolateDigits {
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
}
