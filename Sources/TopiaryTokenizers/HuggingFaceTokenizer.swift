import Foundation

/// Reads Hugging Face tokenizer files: `tokenizer.json` (the `tokenizers` library's format) with the special tokens of
/// `tokenizer_config.json` and `generation_config.json` beside it.
///
/// Two kinds of `BPE` model are read, the ones LLaMA, Qwen2 and Gemma 3 use:
/// - byte-level BPE (`ByteLevel` pre-tokenizer, alone, after `Digits`, or after the LLaMA-3 / Qwen2 `Split` regex);
/// - SentencePiece-style BPE with `byte_fallback` (`Replace(" ", "▁")` normalizer, optionally after `Prepend("▁")`, or a
///   `Metaspace` pre-tokenizer that does not split): merge ranks become piece scores, so it runs as
///   ``SentencePieceTokenizer`` does for the GGUF form of the same model.
/// Anything else (WordPiece, Unigram, other pre-tokenizers) is refused with an error naming the file.
extension TokenizerVocabulary {
    /// Reads `tokenizer.json` in `directory` with its `tokenizer_config.json` and `generation_config.json` (if present).
    public init(huggingFaceDirectory directory: String) throws {
        let path = directory + "/tokenizer.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenizerError.invalidJSON(source: path, detail: "the file does not exist or cannot be read")
        }
        let fm = FileManager.default
        try self.init(
            huggingFaceJSON: data, config: fm.contents(atPath: directory + "/tokenizer_config.json"),
            generationConfig: fm.contents(atPath: directory + "/generation_config.json"), source: path)
        // transformers 5 keeps the chat template in a file of its own.
        if chatTemplate == nil, let template = fm.contents(atPath: directory + "/chat_template.jinja") {
            chatTemplate = String(decoding: template, as: UTF8.self)
        }
    }

    public init(huggingFaceJSON data: Data, config: Data? = nil, generationConfig: Data? = nil, source: String) throws {
        func fail(_ detail: String) -> TokenizerError { .invalidJSON(source: source, detail: detail) }
        // The vocabulary and merges are read exactly by JSONVocabulary; Foundation parses the rest without them (a fraction
        // of the memory a 262k-token vocabulary with half a million merges takes as Foundation objects).
        let scanned = try JSONVocabulary.read(data, source: source)
        guard let root = (try? JSONSerialization.jsonObject(with: scanned.rest)) as? [String: Any] else { throw fail("not a JSON object") }
        guard let model = root["model"] as? [String: Any] else { throw fail("no `model`") }
        let type = model["type"] as? String ?? "BPE"
        guard type == "BPE" else { throw TokenizerError.unsupportedModel(source: source, model: type) }
        guard model["vocab"] is [String: Any], let vocab = scanned.vocab else { throw fail("no `model.vocab`") }
        let added = root["added_tokens"] as? [[String: Any]] ?? []
        var maxID = -1
        for (_, id) in vocab {
            guard id >= 0 else { throw fail("a vocabulary id is not a non-negative integer") }
            maxID = max(maxID, id)
        }
        for a in added { maxID = max(maxID, (a["id"] as? NSNumber)?.intValue ?? -1) }
        // A vocabulary's ids index an array: refuse counts far beyond the entries the file holds.
        guard maxID < (vocab.count + added.count) * 2 + 1024 else {
            throw fail("token id \(maxID) is far beyond the \(vocab.count + added.count) tokens listed")
        }
        let byteFallback = model["byte_fallback"] as? Bool ?? false
        let style = try Self.style(root, byteFallback: byteFallback, source: source)
        var tokens = [String](repeating: "", count: maxID + 1)
        var types = [Int](repeating: TokenType.unused, count: maxID + 1)
        // Keyed by bytes: canonically equivalent tokens are different tokens.
        var ids: [[UInt8]: Int] = [:]
        for (t, id) in vocab {
            tokens[id] = t
            types[id] = byteFallback && Self.byteValue(t) != nil ? TokenType.byte : TokenType.normal
            ids[Array(t.utf8)] = id
        }
        for a in added {
            guard let id = (a["id"] as? NSNumber)?.intValue, id >= 0, let content = a["content"] as? String else {
                throw fail("an added token lacks id or content")
            }
            tokens[id] = content
            types[id] = (a["special"] as? Bool ?? false) ? TokenType.control : TokenType.userDefined
            ids[Array(content.utf8)] = id
        }
        let merges = scanned.merges
        let unknown = (model["unk_token"] as? String).flatMap { ids[Array($0.utf8)] }
        if let unknown, types[unknown] == TokenType.normal { types[unknown] = TokenType.unknown }
        switch style {
        case let .byteLevel(pre):
            self.init(model: .byteLevelBPE, tokens: tokens, tokenTypes: types)
            self.merges = merges.map { $0.0 + " " + $0.1 }
            preTokenizer = pre
        case let .sentencePiece(prefix):
            self.init(model: .sentencePiece, tokens: tokens, tokenTypes: types)
            scores = try Self.scores(fromMerges: merges, tokens: tokens, ids: ids, source: source)
            addSpacePrefix = prefix
        }
        unknownTokenID = unknown
        try readSpecialTokens(root: root, ids: ids, config: config, generationConfig: generationConfig)
    }

    enum Style { case byteLevel(String), sentencePiece(prefix: Bool) }

    /// Which of the supported pipelines `root` describes.
    static func style(_ root: [String: Any], byteFallback: Bool, source: String) throws -> Style {
        func flatten(_ p: Any?, _ key: String) -> [[String: Any]] {
            guard let p = p as? [String: Any] else { return [] }
            if p["type"] as? String == "Sequence" { return (p[key] as? [Any] ?? []).flatMap { flatten($0, key) } }
            return [p]
        }
        let pre = flatten(root["pre_tokenizer"], "pretokenizers")
        let normalizers = flatten(root["normalizer"], "normalizers")
        let preKinds = pre.compactMap { $0["type"] as? String }
        let normKinds = normalizers.compactMap { $0["type"] as? String }
        func describe(_ kinds: [String]) -> String { kinds.isEmpty ? "none" : kinds.joined(separator: "+") }
        func string(_ step: [String: Any], _ key: String) -> String? {
            (step[key] as? [String: Any])?["String"] as? String ?? step[key] as? String
        }
        if preKinds.last == "ByteLevel" {
            // NFC normalization (Qwen2) is not applied, as llama.cpp does not: text is NFC in practice.
            guard normKinds.allSatisfy({ $0 == "NFC" }) else {
                throw TokenizerError.unknownPreTokenizer(source: source, name: "normalizer " + describe(normKinds) + " before ByteLevel")
            }
            switch preKinds.count {
            case 1 where pre[0]["use_regex"] as? Bool ?? true:
                return .byteLevel("gpt2")
            case 2 where preKinds[0] == "Digits" && pre[0]["individual_digits"] as? Bool == true:
                return .byteLevel("smollm")
            case 2 where preKinds[0] == "Split" && pre[1]["use_regex"] as? Bool == false:
                let pattern = (pre[0]["pattern"] as? [String: Any])?["Regex"] as? String
                if pattern == PreTokenizer.llama3Pattern { return .byteLevel("llama-bpe") }
                if pattern == PreTokenizer.qwen2Pattern { return .byteLevel("qwen2") }
                throw TokenizerError.unknownPreTokenizer(source: source, name: "Split regex \(pattern ?? "?")")
            default:
                throw TokenizerError.unknownPreTokenizer(source: source, name: describe(preKinds))
            }
        }
        guard byteFallback else {
            // Neither byte-level nor SentencePiece with byte_fallback.
            throw TokenizerError.unknownPreTokenizer(source: source, name: describe(preKinds))
        }
        // SentencePiece: spaces become "▁" in the normalizer (Gemma, LLaMA 2) or in a Metaspace pre-tokenizer.
        let replaces = normalizers.contains {
            $0["type"] as? String == "Replace" && string($0, "pattern") == " " && string($0, "content") == "▁"
        }
        let prepends = normalizers.contains { $0["type"] as? String == "Prepend" && string($0, "prepend") == "▁" }
        if replaces && normKinds.allSatisfy({ $0 == "Replace" || $0 == "Prepend" }) {
            // Gemma's Split(" ", MergedWithPrevious) finds no spaces left: it changes nothing.
            let harmless = pre.allSatisfy { $0["type"] as? String == "Split" && string($0, "pattern") == " " }
            guard harmless else {
                throw TokenizerError.unknownPreTokenizer(source: source, name: describe(preKinds) + " after ▁ replacement")
            }
            return .sentencePiece(prefix: prepends)
        }
        if normKinds.isEmpty, preKinds == ["Metaspace"], pre[0]["split"] as? Bool == false, string(pre[0], "replacement") == "▁" {
            let scheme = pre[0]["prepend_scheme"] as? String ?? ((pre[0]["add_prefix_space"] as? Bool ?? true) ? "always" : "never")
            return .sentencePiece(prefix: scheme != "never")
        }
        throw TokenizerError.unknownPreTokenizer(
            source: source, name: "normalizer \(describe(normKinds)), pre-tokenizer \(describe(preKinds)) with byte_fallback")
    }

    /// SentencePiece scores from BPE merge ranks: a piece formed by merge `r` (its first) scores `-r`, so that the
    /// highest-scoring pair is the lowest-ranked merge; pieces no merge forms score below every merge.
    static func scores(fromMerges merges: [(String, String)], tokens: [String], ids: [[UInt8]: Int], source: String) throws -> [Float] {
        var scores = [Float](repeating: -Float(merges.count + 1), count: tokens.count)
        var seen = [Bool](repeating: false, count: tokens.count)
        for (rank, (a, b)) in merges.enumerated() {
            let left = Array(a.utf8), right = Array(b.utf8)
            guard ids[left] != nil, ids[right] != nil, let merged = ids[left + right] else {
                throw TokenizerError.badMerge(source: source, index: rank, merge: a + " " + b)
            }
            if !seen[merged] {
                seen[merged] = true
                scores[merged] = -Float(rank)
            }
        }
        return scores
    }

    /// BOS, EOS, padding and whether BOS/EOS are added: `tokenizer_config.json` first, then `generation_config.json`,
    /// then the post-processor's template (whose first special token is added before the text).
    mutating func readSpecialTokens(root: [String: Any], ids: [[UInt8]: Int], config: Data?, generationConfig: Data?) throws {
        var templateFirst: Int?, templateLast: Int?
        var post = root["post_processor"] as? [String: Any]
        if post?["type"] as? String == "Sequence" {
            post = (post?["processors"] as? [[String: Any]])?.first { $0["type"] as? String == "TemplateProcessing" }
        }
        if let post, post["type"] as? String == "TemplateProcessing", let single = post["single"] as? [[String: Any]] {
            func special(_ item: [String: Any]?) -> Int? {
                ((item?["SpecialToken"] as? [String: Any])?["id"] as? String).flatMap { ids[Array($0.utf8)] }
            }
            templateFirst = special(single.first)
            templateLast = single.count > 1 ? special(single.last) : nil
        }
        bosTokenID = templateFirst
        addBOS = templateFirst != nil
        eosTokenID = templateLast
        addEOS = templateLast != nil
        if let generationConfig, let g = (try? JSONSerialization.jsonObject(with: generationConfig)) as? [String: Any] {
            func first(_ key: String) -> Int? { (g[key] as? NSNumber)?.intValue ?? (g[key] as? [NSNumber])?.first?.intValue }
            bosTokenID = first("bos_token_id") ?? bosTokenID
            eosTokenID = first("eos_token_id") ?? eosTokenID
            paddingTokenID = first("pad_token_id")
        }
        if let config, let c = (try? JSONSerialization.jsonObject(with: config)) as? [String: Any] {
            func tokenID(_ key: String) -> Int? {
                if let s = c[key] as? String { return ids[Array(s.utf8)] }
                if let d = c[key] as? [String: Any], let s = d["content"] as? String { return ids[Array(s.utf8)] }
                return nil
            }
            bosTokenID = tokenID("bos_token") ?? bosTokenID
            eosTokenID = tokenID("eos_token") ?? eosTokenID
            paddingTokenID = tokenID("pad_token") ?? paddingTokenID
            if let add = c["add_bos_token"] as? Bool { addBOS = add && bosTokenID != nil }
            if let add = c["add_eos_token"] as? Bool { addEOS = add && eosTokenID != nil }
            chatTemplate = c["chat_template"] as? String
        }
    }
}

extension BPETokenizer {
    /// Reads a Hugging Face `tokenizer.json` with a byte-level BPE model (GPT-2, SmolLM2, LLaMA 3, Qwen 2 …).
    /// BOS/EOS come from the post-processor's template and from a `tokenizer_config.json` beside the file, if any.
    public convenience init(huggingFaceJSON path: String) throws {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenizerError.invalidJSON(source: path, detail: "the file does not exist or cannot be read")
        }
        try self.init(
            huggingFaceJSON: data,
            config: FileManager.default.contents(atPath: directory.appendingPathComponent("tokenizer_config.json").path),
            source: path)
    }

    public convenience init(huggingFaceJSON data: Data, config: Data? = nil, source: String) throws {
        let v = try TokenizerVocabulary(huggingFaceJSON: data, config: config, source: source)
        guard v.model == .byteLevelBPE else {
            throw TokenizerError.invalidJSON(
                source: source, detail: "a SentencePiece-style BPE (byte_fallback), not byte-level: read it with TokenizerVocabulary")
        }
        try self.init(
            tokens: v.tokens, merges: v.merges, tokenTypes: v.tokenTypes, preTokenizer: v.preTokenizer, bosTokenID: v.bosTokenID,
            eosTokenID: v.eosTokenID, unknownTokenID: v.unknownTokenID, addBOS: v.addBOS, addEOS: v.addEOS, source: source)
    }
}
