import Foundation

/// What a tokenizer is, whatever file it was read from: the vocabulary, how text is split and merged, and the special
/// tokens. A GGUF file's `tokenizer.ggml.*` keys and a Hugging Face `tokenizer.json` (with `tokenizer_config.json`)
/// both describe one; Topiary reads either into this and writes either from it.
///
/// ```swift
/// let vocabulary = try TokenizerVocabulary(huggingFaceDirectory: "models/SmolLM2-135M-Instruct")
/// let tokenizer = try vocabulary.makeTokenizer(source: "tokenizer.json")
/// ```
public struct TokenizerVocabulary: Sendable, Equatable {
    /// How pieces are merged.
    public enum Model: String, Sendable {
        /// Byte-level BPE by merge rank (GPT-2, SmolLM2, LLaMA 3, Qwen2): GGUF's `gpt2`.
        case byteLevelBPE = "gpt2"
        /// SentencePiece-style BPE by piece score with byte fallback (LLaMA 2, Gemma): GGUF's `llama`.
        case sentencePiece = "llama"
    }

    /// Token kinds as GGUF numbers them.
    public enum TokenType {
        public static let normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    public var model: Model
    public var tokens: [String]
    /// One ``TokenType`` per token.
    public var tokenTypes: [Int]
    /// Byte-level BPE merges, `"left right"`, highest priority first.
    public var merges: [String] = []
    /// SentencePiece piece scores (higher merges first), one per token.
    public var scores: [Float] = []
    /// The byte-level pre-tokenizer (``PreTokenizer`` names: `smollm`, `llama-bpe`, `qwen2`, `gpt2`).
    public var preTokenizer = "default"
    public var bosTokenID: Int?
    public var eosTokenID: Int?
    public var unknownTokenID: Int?
    public var paddingTokenID: Int?
    public var addBOS = false
    public var addEOS = false
    /// SentencePiece: a `▁` is put before the text (LLaMA 2; Gemma 3 has none).
    public var addSpacePrefix = false
    public var chatTemplate: String?

    public init(model: Model, tokens: [String], tokenTypes: [Int]) {
        self.model = model
        self.tokens = tokens
        self.tokenTypes = tokenTypes
    }

    /// The tokenizer this vocabulary describes.
    public func makeTokenizer(source: String) throws -> any Tokenizer {
        switch model {
        case .byteLevelBPE:
            return try BPETokenizer(
                tokens: tokens, merges: merges, tokenTypes: tokenTypes, preTokenizer: preTokenizer, bosTokenID: bosTokenID,
                eosTokenID: eosTokenID, unknownTokenID: unknownTokenID, addBOS: addBOS, addEOS: addEOS, source: source)
        case .sentencePiece:
            return try SentencePieceTokenizer(
                tokens: tokens, scores: scores, tokenTypes: tokenTypes, bosTokenID: bosTokenID, eosTokenID: eosTokenID,
                unknownTokenID: unknownTokenID, addBOS: addBOS, addEOS: addEOS, addSpacePrefix: addSpacePrefix, source: source)
        }
    }

    /// The id of a token's text, for the special tokens a `tokenizer_config.json` names.
    func id(of text: String) -> Int? { tokens.firstIndex(of: text) }

    /// `<0xAB>` → 0xAB.
    static func byteValue(_ token: String) -> UInt8? {
        guard token.utf8.count == 6, token.hasPrefix("<0x"), token.hasSuffix(">") else { return nil }
        return UInt8(token.dropFirst(3).prefix(2), radix: 16)
    }
}
