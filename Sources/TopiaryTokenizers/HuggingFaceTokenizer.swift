import Foundation

extension BPETokenizer {
    /// Reads a Hugging Face `tokenizer.json` with a byte-level BPE model (GPT-2, SmolLM2, LLaMA 3, Qwen 2 …).
    /// BOS/EOS come from the post-processor's template and from a `tokenizer_config.json` beside the file, if any.
    public convenience init(huggingFaceJSON path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TokenizerError.invalidJSON(source: path, detail: "the file does not exist or cannot be read")
        }
        let configPath = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("tokenizer_config.json").path
        try self.init(huggingFaceJSON: data, config: FileManager.default.contents(atPath: configPath), source: path)
    }

    public convenience init(huggingFaceJSON data: Data, config: Data? = nil, source: String) throws {
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw TokenizerError.invalidJSON(source: source, detail: "not a JSON object")
        }
        guard let model = root["model"] as? [String: Any] else { throw TokenizerError.invalidJSON(source: source, detail: "no `model`") }
        let type = model["type"] as? String ?? "BPE"
        guard type == "BPE" else { throw TokenizerError.unsupportedModel(source: source, model: type) }
        guard let vocab = model["vocab"] as? [String: Any] else {
            throw TokenizerError.invalidJSON(source: source, detail: "no `model.vocab`")
        }
        let added = root["added_tokens"] as? [[String: Any]] ?? []
        var maxID = -1
        for v in vocab.values {
            guard let id = (v as? NSNumber)?.intValue, id >= 0 else {
                throw TokenizerError.invalidJSON(source: source, detail: "a vocabulary id is not a non-negative integer")
            }
            maxID = max(maxID, id)
        }
        for a in added { maxID = max(maxID, (a["id"] as? NSNumber)?.intValue ?? -1) }
        // A vocabulary's ids index an array: refuse counts far beyond the entries the file holds.
        guard maxID < (vocab.count + added.count) * 2 + 1024 else {
            throw TokenizerError.invalidJSON(
                source: source, detail: "token id \(maxID) is far beyond the \(vocab.count + added.count) tokens listed")
        }
        var tokens = [String](repeating: "", count: maxID + 1)
        var types = [Int](repeating: 1, count: maxID + 1)
        for (t, v) in vocab { tokens[(v as! NSNumber).intValue] = t }
        var ids: [String: Int] = [:]
        for (t, v) in vocab { ids[t] = (v as! NSNumber).intValue }
        for a in added {
            guard let id = (a["id"] as? NSNumber)?.intValue, id >= 0, let content = a["content"] as? String else {
                throw TokenizerError.invalidJSON(source: source, detail: "an added token lacks id or content")
            }
            tokens[id] = content
            types[id] = (a["special"] as? Bool ?? false) ? 3 : 4
            ids[content] = id
        }
        var merges: [String] = []
        for m in model["merges"] as? [Any] ?? [] {
            if let s = m as? String {
                merges.append(s)
            } else if let pair = m as? [String], pair.count == 2 {
                merges.append(pair[0] + " " + pair[1])
            } else {
                throw TokenizerError.invalidJSON(source: source, detail: "a merge is neither \"a b\" nor [a, b]")
            }
        }
        // Pre-tokenizer: byte-level, with digits isolated first when the sequence says so.
        let pre = root["pre_tokenizer"] as? [String: Any]
        func flatten(_ p: [String: Any]?) -> [[String: Any]] {
            guard let p else { return [] }
            if p["type"] as? String == "Sequence" { return (p["pretokenizers"] as? [[String: Any]] ?? []).flatMap { flatten($0) } }
            return [p]
        }
        let steps = flatten(pre)
        let kinds = steps.compactMap { $0["type"] as? String }
        let name: String
        if kinds == ["ByteLevel"] {
            name = "gpt2"
        } else if kinds == ["Digits", "ByteLevel"], steps[0]["individual_digits"] as? Bool == true {
            name = "smollm"
        } else {
            throw TokenizerError.unknownPreTokenizer(source: source, name: kinds.isEmpty ? "none" : kinds.joined(separator: "+"))
        }
        // Special tokens: the template's first special token is BOS; tokenizer_config.json names BOS/EOS.
        var bos: Int?, eos: Int?, addBOS = false
        if let post = root["post_processor"] as? [String: Any], post["type"] as? String == "TemplateProcessing",
            let single = post["single"] as? [[String: Any]], let first = single.first?["SpecialToken"] as? [String: Any],
            let name = first["id"] as? String, let id = ids[name]
        {
            bos = id
            addBOS = true
        }
        if let config, let c = (try? JSONSerialization.jsonObject(with: config)) as? [String: Any] {
            func tokenID(_ key: String) -> Int? {
                if let s = c[key] as? String { return ids[s] }
                if let d = c[key] as? [String: Any], let s = d["content"] as? String { return ids[s] }
                return nil
            }
            bos = bos ?? tokenID("bos_token")
            eos = tokenID("eos_token")
            if let add = c["add_bos_token"] as? Bool { addBOS = add }
        }
        let unknown = (model["unk_token"] as? String).flatMap { ids[$0] }
        try self.init(
            tokens: tokens, merges: merges, tokenTypes: types, preTokenizer: name, bosTokenID: bos, eosTokenID: eos,
            unknownTokenID: unknown, addBOS: addBOS, addEOS: false, source: source)
    }
}
