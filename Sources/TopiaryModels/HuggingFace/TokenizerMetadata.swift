import Foundation
import TopiaryGGUF
import TopiaryTokenizers

/// The `tokenizer.ggml.*` keys of a GGUF file and the ``TokenizerVocabulary`` they describe, both ways: a GGUF model's
/// tokenizer is written as Hugging Face files from them, and a Hugging Face model's tokenizer is kept as them (in a
/// checkpoint's `tokenizer_metadata.json`, in a GGUF export).
extension TokenizerVocabulary {
    public init(ggufMetadata md: [String: GGUFValue], name: String) throws {
        guard let model = md["tokenizer.ggml.model"]?.string else {
            throw ModelError.missingMetadata(path: name, key: "tokenizer.ggml.model")
        }
        guard let tokens = md["tokenizer.ggml.tokens"]?.stringArray else {
            throw ModelError.missingMetadata(path: name, key: "tokenizer.ggml.tokens")
        }
        let types = md["tokenizer.ggml.token_type"]?.intArray ?? []
        let tokenTypes = tokens.indices.map { $0 < types.count ? types[$0] : TokenType.normal }
        switch model {
        case "gpt2":
            guard let merges = md["tokenizer.ggml.merges"]?.stringArray else {
                throw ModelError.missingMetadata(path: name, key: "tokenizer.ggml.merges")
            }
            self.init(model: .byteLevelBPE, tokens: tokens, tokenTypes: tokenTypes)
            self.merges = merges
            preTokenizer = md["tokenizer.ggml.pre"]?.string ?? "default"
            addBOS = md["tokenizer.ggml.add_bos_token"]?.bool ?? false
        case "llama":
            guard let scores = md["tokenizer.ggml.scores"]?.floatArray else {
                throw ModelError.missingMetadata(path: name, key: "tokenizer.ggml.scores")
            }
            self.init(model: .sentencePiece, tokens: tokens, tokenTypes: tokenTypes)
            self.scores = scores
            addBOS = md["tokenizer.ggml.add_bos_token"]?.bool ?? true
            addSpacePrefix = md["tokenizer.ggml.add_space_prefix"]?.bool ?? true
        default:
            throw ModelError.invalidConfig(
                "\(name): tokenizer model '\(model)' is not supported (supported: gpt2 byte-level BPE, llama SentencePiece)")
        }
        bosTokenID = md["tokenizer.ggml.bos_token_id"]?.int
        eosTokenID = md["tokenizer.ggml.eos_token_id"]?.int
        unknownTokenID = md["tokenizer.ggml.unknown_token_id"]?.int
        paddingTokenID = md["tokenizer.ggml.padding_token_id"]?.int
        addEOS = md["tokenizer.ggml.add_eos_token"]?.bool ?? false
        chatTemplate = md["tokenizer.chat_template"]?.string
    }

    /// The `tokenizer.ggml.*` keys (and `tokenizer.chat_template`) that describe this vocabulary, typed as llama.cpp
    /// expects them.
    public var ggufMetadata: [String: GGUFValue] {
        var md: [String: GGUFValue] = [
            "tokenizer.ggml.model": .string(model.rawValue),
            "tokenizer.ggml.tokens": .array(tokens.map(GGUFValue.string)),
            "tokenizer.ggml.token_type": .array(tokenTypes.map { .int32(Int32($0)) }),
            "tokenizer.ggml.add_bos_token": .bool(addBOS),
            "tokenizer.ggml.add_eos_token": .bool(addEOS),
        ]
        switch model {
        case .byteLevelBPE:
            md["tokenizer.ggml.merges"] = .array(merges.map(GGUFValue.string))
            md["tokenizer.ggml.pre"] = .string(preTokenizer)
        case .sentencePiece:
            md["tokenizer.ggml.scores"] = .array(scores.map(GGUFValue.float32))
            md["tokenizer.ggml.add_space_prefix"] = .bool(addSpacePrefix)
        }
        for (key, id) in [("bos", bosTokenID), ("eos", eosTokenID), ("unknown", unknownTokenID), ("padding", paddingTokenID)] {
            if let id, id >= 0 { md["tokenizer.ggml.\(key)_token_id"] = .uint32(UInt32(id)) }
        }
        if let chatTemplate { md["tokenizer.chat_template"] = .string(chatTemplate) }
        return md
    }
}
