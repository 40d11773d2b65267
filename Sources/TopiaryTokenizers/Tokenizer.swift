import Foundation

/// Text ↔ token ids.
public protocol Tokenizer: Sendable {
    /// Encodes `text`. `addSpecialTokens` adds BOS/EOS as the model asks; `parseSpecial` turns
    /// special-token strings in the text (e.g. `<|im_start|>`) into their single ids.
    func encode(_ text: String, addSpecialTokens: Bool, parseSpecial: Bool) -> [Int]
    /// Decodes ids to text; `skipSpecialTokens` leaves out control tokens.
    func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String
    /// The vocabulary string of a token.
    func tokenString(_ id: Int) -> String?
    var vocabularySize: Int { get }
    var bosTokenID: Int? { get }
    var eosTokenID: Int? { get }
}

extension Tokenizer {
    /// Plain text encoding: no special tokens added or parsed.
    public func encode(_ text: String) -> [Int] { encode(text, addSpecialTokens: false, parseSpecial: false) }
    public func decode(_ ids: [Int]) -> String { decode(ids, skipSpecialTokens: false) }
}

/// Problems building a tokenizer. Each names the source and the problem.
public enum TokenizerError: Error, LocalizedError, Equatable {
    case emptyVocabulary(source: String)
    case unknownPreTokenizer(source: String, name: String)
    case badMerge(source: String, index: Int, merge: String)
    case missingByteToken(source: String, byte: UInt8)
    case invalidJSON(source: String, detail: String)
    case unsupportedModel(source: String, model: String)

    public var errorDescription: String? {
        switch self {
        case let .emptyVocabulary(s): return "\(s): the tokenizer has an empty vocabulary"
        case let .unknownPreTokenizer(s, n):
            return "\(s): unknown pre-tokenizer '\(n)' (supported: \(PreTokenizer.supported.joined(separator: ", ")))"
        case let .badMerge(s, i, m): return "\(s): merge \(i) '\(m)' does not name two vocabulary tokens"
        case let .missingByteToken(s, b): return "\(s): the vocabulary has no token for byte 0x\(String(b, radix: 16))"
        case let .invalidJSON(s, d): return "\(s): invalid tokenizer.json (\(d))"
        case let .unsupportedModel(s, m):
            return "\(s): tokenizer model '\(m)' is not supported (supported: BPE, byte-level or SentencePiece-style with byte_fallback)"
        }
    }
}

/// GPT-2's reversible map from bytes to printable Unicode characters used in byte-level BPE vocabularies.
enum ByteLevel {
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            if (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b) {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(256 + n)!
                n += 1
            }
        }
        return table
    }()

    static let scalarToByte: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { map[s.value] = UInt8(b) }
        return map
    }()
}
