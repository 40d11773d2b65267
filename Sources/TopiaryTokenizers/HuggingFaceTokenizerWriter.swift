import Foundation

/// Writes a vocabulary as Hugging Face tokenizer files that the `tokenizers` library (and transformers'
/// `AutoTokenizer`) load and that encode text as Topiary does:
/// - byte-level BPE: the pre-tokenizer of ``preTokenizer`` (SmolLM2's `Digits` + `ByteLevel`, LLaMA 3's or Qwen2's
///   `Split` regex + `ByteLevel`, or GPT-2's `ByteLevel`) and the merges;
/// - SentencePiece BPE (Gemma 3, LLaMA 2): `Replace(" ", "▁")` (after `Prepend("▁")` with a space prefix), a BPE model with
///   `byte_fallback` whose merges are derived from the piece scores as transformers' `GemmaConverter` derives them
///   (every piece that splits into two pieces, highest score first).
/// Control tokens become special added tokens, user-defined ones (Gemma's runs of newlines and spaces) non-special
/// added tokens matched in the raw text, as llama.cpp matches them.
extension TokenizerVocabulary {
    /// `tokenizer.json`, `tokenizer_config.json` and `generation_config.json` by file name.
    public func huggingFaceFiles() throws -> [String: Data] {
        var files = ["tokenizer.json": try huggingFaceTokenizerJSON(), "tokenizer_config.json": try huggingFaceTokenizerConfig()]
        var generation: [String: Any] = [:]
        if let bosTokenID { generation["bos_token_id"] = bosTokenID }
        if let eosTokenID { generation["eos_token_id"] = eosTokenID }
        if let paddingTokenID { generation["pad_token_id"] = paddingTokenID }
        files["generation_config.json"] = try Self.json(generation)
        return files
    }

    /// The `tokenizer.json` of this vocabulary.
    public func huggingFaceTokenizerJSON() throws -> Data {
        // The vocabulary is written by hand (``JSONVocabulary``): canonically equivalent tokens are distinct entries.
        var vocab: [(String, Int)] = []
        var seen: Set<[UInt8]> = []
        var added: [[String: Any]] = []
        for (i, t) in tokens.enumerated() {
            let type = i < tokenTypes.count ? tokenTypes[i] : TokenType.normal
            if seen.insert(Array(t.utf8)).inserted { vocab.append((t, i)) }
            if type == TokenType.control || type == TokenType.unknown || type == TokenType.userDefined {
                added.append([
                    "id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false,
                    "special": type != TokenType.userDefined,
                ])
            }
        }
        let unk: Any = unknownTokenID.flatMap { $0 < tokens.count ? tokens[$0] : nil } ?? NSNull()
        var root: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added,
        ]
        var model: [String: Any] = [
            "type": "BPE", "dropout": NSNull(), "unk_token": unk, "continuing_subword_prefix": NSNull(),
            "end_of_word_suffix": NSNull(), "ignore_merges": false, "vocab": Self.vocabularyPlaceholder,
        ]
        let template = templateProcessor()
        switch self.model {
        case .byteLevelBPE:
            model["fuse_unk"] = false
            model["byte_fallback"] = false
            model["merges"] = try merges.enumerated().map { rank, m -> [String] in
                let parts = m.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                guard parts.count == 2 else { throw TokenizerError.badMerge(source: "tokenizer.ggml.merges", index: rank, merge: m) }
                return parts
            }
            root["normalizer"] = NSNull()
            root["pre_tokenizer"] = try byteLevelPreTokenizer()
            root["decoder"] = ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true]
            root["post_processor"] = template ?? ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true]
        case .sentencePiece:
            model["fuse_unk"] = true
            model["byte_fallback"] = true
            model["merges"] = Self.sentencePieceMerges(tokens: tokens, types: tokenTypes, scores: scores).map { [$0.0, $0.1] }
            let replace: [String: Any] = ["type": "Replace", "pattern": ["String": " "], "content": "▁"]
            root["normalizer"] =
                addSpacePrefix ? ["type": "Sequence", "normalizers": [["type": "Prepend", "prepend": "▁"], replace]] : replace
            root["pre_tokenizer"] = NSNull()
            var decoders: [[String: Any]] = [
                ["type": "Replace", "pattern": ["String": "▁"], "content": " "], ["type": "ByteFallback"], ["type": "Fuse"],
            ]
            if addSpacePrefix { decoders.append(["type": "Strip", "content": " ", "start": 1, "stop": 0]) }
            root["decoder"] = ["type": "Sequence", "decoders": decoders]
            root["post_processor"] = template ?? NSNull()
        }
        root["model"] = model
        let text = try Self.json(root)
        let placeholder = Data("\"\(Self.vocabularyPlaceholder)\"".utf8)
        guard let range = text.range(of: placeholder) else {
            throw TokenizerError.invalidJSON(source: "tokenizer.json", detail: "no vocabulary")
        }
        var out = text
        out.replaceSubrange(range, with: JSONVocabulary.object(vocab))
        return out
    }

    static let vocabularyPlaceholder = "@@topiary-vocabulary@@"

    /// `tokenizer_config.json`: the special tokens by text and whether BOS/EOS are added.
    public func huggingFaceTokenizerConfig() throws -> Data {
        func text(_ id: Int?) -> Any { id.flatMap { $0 >= 0 && $0 < tokens.count ? tokens[$0] : nil } ?? NSNull() }
        var config: [String: Any] = [
            "tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": addBOS, "add_eos_token": addEOS,
            "bos_token": text(bosTokenID), "eos_token": text(eosTokenID), "unk_token": text(unknownTokenID),
            "pad_token": text(paddingTokenID), "clean_up_tokenization_spaces": false,
        ]
        if let chatTemplate { config["chat_template"] = chatTemplate }
        return try Self.json(config)
    }

    /// BOS before and EOS after the text, as the vocabulary asks (nil when neither is added).
    func templateProcessor() -> [String: Any]? {
        func special(_ id: Int?, _ add: Bool) -> (String, Int)? {
            guard add, let id, id >= 0, id < tokens.count else { return nil }
            return (tokens[id], id)
        }
        let bos = special(bosTokenID, addBOS), eos = special(eosTokenID, addEOS)
        guard bos != nil || eos != nil else { return nil }
        func item(_ s: (String, Int)?, _ typeID: Int) -> [[String: Any]] {
            s.map { [["SpecialToken": ["id": $0.0, "type_id": typeID]]] } ?? []
        }
        func sequence(_ id: String, _ typeID: Int) -> [[String: Any]] { [["Sequence": ["id": id, "type_id": typeID]]] }
        var specials: [String: Any] = [:]
        for s in [bos, eos].compactMap({ $0 }) { specials[s.0] = ["id": s.0, "ids": [s.1], "tokens": [s.0]] }
        return [
            "type": "TemplateProcessing",
            "single": item(bos, 0) + sequence("A", 0) + item(eos, 0),
            "pair": item(bos, 0) + sequence("A", 0) + item(eos, 0) + item(bos, 1) + sequence("B", 1) + item(eos, 1),
            "special_tokens": specials,
        ]
    }

    func byteLevelPreTokenizer() throws -> [String: Any] {
        func byteLevel(regex: Bool) -> [String: Any] {
            ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex]
        }
        func split(_ pattern: String) -> [String: Any] {
            [
                "type": "Sequence",
                "pretokenizers": [
                    ["type": "Split", "pattern": ["Regex": pattern], "behavior": "Isolated", "invert": false], byteLevel(regex: false),
                ],
            ]
        }
        switch preTokenizer {
        case "gpt2", "default": return byteLevel(regex: true)
        case "smollm":
            return ["type": "Sequence", "pretokenizers": [["type": "Digits", "individual_digits": true], byteLevel(regex: true)]]
        case "llama3", "llama-bpe": return split(PreTokenizer.llama3Pattern)
        case "qwen2", "deepseek-r1-qwen": return split(PreTokenizer.qwen2Pattern)
        default: throw TokenizerError.unknownPreTokenizer(source: "tokenizer.ggml.pre", name: preTokenizer)
        }
    }

    /// BPE merges equivalent to merging by piece score: for every normal piece, each split into two normal pieces, ordered
    /// by the piece's score (highest first), then by longer left and right parts, then by piece id — transformers'
    /// `generate_merges` order.
    public static func sentencePieceMerges(tokens: [String], types: [Int], scores: [Float]) -> [(String, String)] {
        func isNormal(_ i: Int) -> Bool { (i < types.count ? types[i] : TokenType.normal) == TokenType.normal }
        // Keyed by bytes: canonically equivalent tokens are different tokens.
        var ids: [[UInt8]: Int] = [:]
        for (i, t) in tokens.enumerated() where isNormal(i) && ids[Array(t.utf8)] == nil { ids[Array(t.utf8)] = i }
        struct Candidate { var left: Int, right: Int, score: Float, leftLength: Int, rightLength: Int, order: Int }
        var candidates: [Candidate] = []
        for (i, t) in tokens.enumerated() where isNormal(i) {
            let scalars = Array(t.unicodeScalars)
            guard scalars.count > 1 else { continue }
            let bytes = Array(t.utf8)
            var local: [Candidate] = []
            var offset = 0
            for cut in 1..<scalars.count {
                offset += UTF8.width(scalars[cut - 1])
                if let a = ids[Array(bytes[..<offset])], let b = ids[Array(bytes[offset...])] {
                    let score = i < scores.count ? scores[i] : 0
                    local.append(Candidate(left: a, right: b, score: score, leftLength: cut, rightLength: scalars.count - cut, order: 0))
                }
            }
            local.sort { ($0.left, $0.right) < ($1.left, $1.right) }
            for var c in local {
                c.order = candidates.count
                candidates.append(c)
            }
        }
        candidates.sort {
            if $0.score != $1.score { return $0.score > $1.score }
            if $0.leftLength != $1.leftLength { return $0.leftLength > $1.leftLength }
            if $0.rightLength != $1.rightLength { return $0.rightLength > $1.rightLength }
            return $0.order < $1.order
        }
        return candidates.map { (tokens[$0.left], tokens[$0.right]) }
    }

    static func json(_ object: Any) throws -> Data {
        try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }
}
