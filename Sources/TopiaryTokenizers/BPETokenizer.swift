import Foundation

/// Byte-level BPE (GPT-2 family: SmolLM2, LLaMA 3, Qwen 2 …), built from a GGUF file's
/// `tokenizer.ggml.*` arrays or from a Hugging Face `tokenizer.json`.
///
/// ```swift
/// let tok = try BPETokenizer(tokens: tokens, merges: merges, tokenTypes: types, preTokenizer: "smollm",
///                            bosTokenID: 1, eosTokenID: 2, unknownTokenID: 0, addBOS: false, addEOS: false)
/// let ids = tok.encode("Hello world")
/// ```
public final class BPETokenizer: Tokenizer, @unchecked Sendable {
    public let tokens: [String]
    public let preTokenizer: PreTokenizer
    public let bosTokenID: Int?
    public let eosTokenID: Int?
    public let unknownTokenID: Int?
    public let addBOS: Bool
    public let addEOS: Bool
    let vocab: [String: Int32]
    /// (left id, right id) → (rank, merged id)
    let merges: [UInt64: (rank: Int32, merged: Int32)]
    let byteTokens: [Int32]
    /// Special tokens (control and user-defined) by text, longest first, for `parseSpecial`.
    let specials: [(text: [Unicode.Scalar], id: Int)]
    let isControl: [Bool]
    /// Encoded pieces by their UTF-8 bytes (not by `String`, whose equality is canonical equivalence:
    /// "é" and "e" + U+0301 are equal Strings but different bytes and different tokens).
    private var cache: [[UInt8]: [Int32]] = [:]
    private let lock = NSLock()

    public var vocabularySize: Int { tokens.count }

    /// - Parameters:
    ///   - tokenTypes: GGUF token types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    public init(
        tokens: [String], merges mergeList: [String], tokenTypes: [Int]?, preTokenizer: String,
        bosTokenID: Int?, eosTokenID: Int?, unknownTokenID: Int?, addBOS: Bool, addEOS: Bool,
        source: String = "tokenizer"
    ) throws {
        guard !tokens.isEmpty else { throw TokenizerError.emptyVocabulary(source: source) }
        self.tokens = tokens
        self.preTokenizer = try PreTokenizer(name: preTokenizer, source: source)
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
        self.unknownTokenID = unknownTokenID
        self.addBOS = addBOS
        self.addEOS = addEOS
        var v: [String: Int32] = [:]
        v.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() where v[t] == nil { v[t] = Int32(i) }
        vocab = v
        var m: [UInt64: (Int32, Int32)] = [:]
        m.reserveCapacity(mergeList.count)
        for (rank, merge) in mergeList.enumerated() {
            let parts = merge.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, let a = v[String(parts[0])], let b = v[String(parts[1])],
                let merged = v[String(parts[0]) + String(parts[1])]
            else {
                throw TokenizerError.badMerge(source: source, index: rank, merge: merge)
            }
            let key = UInt64(UInt32(a)) << 32 | UInt64(UInt32(b))
            if m[key] == nil { m[key] = (Int32(rank), merged) }
        }
        merges = m
        var bytes: [Int32] = []
        for b in 0..<256 {
            let s = String(Character(ByteLevel.byteToScalar[b]))
            // Some vocabularies leave out bytes that never occur (control characters): those encode to
            // the unknown token, or are dropped when there is none, as Hugging Face's BPE does.
            bytes.append(v[s] ?? -1)
        }
        byteTokens = bytes
        let types = tokenTypes ?? []
        isControl = tokens.indices.map { $0 < types.count && types[$0] == 3 }
        var sp: [(text: [Unicode.Scalar], id: Int)] = []
        for (i, t) in tokens.enumerated() where i < types.count && (types[i] == 3 || types[i] == 4) && !t.isEmpty {
            sp.append((Array(t.unicodeScalars), i))
        }
        specials = sp.sorted { $0.text.count > $1.text.count }
    }

    public func tokenString(_ id: Int) -> String? { id >= 0 && id < tokens.count ? tokens[id] : nil }

    public func encode(_ text: String, addSpecialTokens: Bool, parseSpecial: Bool) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(text.utf8.count / 3)
        if addSpecialTokens && addBOS, let bos = bosTokenID { out.append(bos) }
        let scalars = Array(text.unicodeScalars)
        if parseSpecial && !specials.isEmpty {
            var start = 0, i = 0
            while i < scalars.count {
                if let sp = specialMatch(scalars, at: i) {
                    if start < i { encodePlain(Array(scalars[start..<i]), into: &out) }
                    out.append(sp.id)
                    i += sp.text.count
                    start = i
                } else {
                    i += 1
                }
            }
            if start < scalars.count { encodePlain(Array(scalars[start...]), into: &out) }
        } else {
            encodePlain(scalars, into: &out)
        }
        if addSpecialTokens && addEOS, let eos = eosTokenID { out.append(eos) }
        return out
    }

    private func specialMatch(_ s: [Unicode.Scalar], at i: Int) -> (text: [Unicode.Scalar], id: Int)? {
        for sp in specials where sp.text[0] == s[i] && i + sp.text.count <= s.count {
            if s[i..<(i + sp.text.count)].elementsEqual(sp.text) { return sp }
        }
        return nil
    }

    private func encodePlain(_ scalars: [Unicode.Scalar], into out: inout [Int]) {
        var localCache: [[UInt8]: [Int32]] = [:]
        lock.lock()
        let shared = cache
        lock.unlock()
        for piece in preTokenizer.split(scalars) {
            var word = String.UnicodeScalarView()
            word.append(contentsOf: scalars[piece])
            let piece = String(word)
            let key = Array(piece.utf8)
            if let ids = shared[key] ?? localCache[key] {
                out.append(contentsOf: ids.lazy.map(Int.init))
                continue
            }
            let ids = bpe(piece)
            localCache[key] = ids
            out.append(contentsOf: ids.lazy.map(Int.init))
        }
        if !localCache.isEmpty {
            lock.lock()
            if cache.count < 500_000 { cache.merge(localCache) { a, _ in a } }
            lock.unlock()
        }
    }

    /// Byte-level BPE of one pre-tokenized piece: start from byte tokens, repeatedly merge the adjacent
    /// pair with the lowest merge rank.
    func bpe(_ piece: String) -> [Int32] {
        var symbols = piece.utf8.map { byteTokens[Int($0)] }
        if symbols.contains(-1) {
            let unk = unknownTokenID.map(Int32.init)
            // Split around bytes without a token; encode the rest normally.
            var out: [Int32] = []
            var current: [UInt8] = []
            for b in piece.utf8 {
                if byteTokens[Int(b)] < 0 {
                    if !current.isEmpty { out += bpe(String(decoding: current, as: UTF8.self)); current = [] }
                    if let unk { out.append(unk) }
                } else {
                    current.append(b)
                }
            }
            if !current.isEmpty { out += bpe(String(decoding: current, as: UTF8.self)) }
            return out
        }
        if symbols.count < 2 { return symbols }
        while symbols.count > 1 {
            var bestRank = Int32.max, bestIndex = -1, bestMerged: Int32 = 0
            for i in 0..<(symbols.count - 1) {
                let key = UInt64(UInt32(symbols[i])) << 32 | UInt64(UInt32(symbols[i + 1]))
                if let m = merges[key], m.rank < bestRank {
                    bestRank = m.rank
                    bestIndex = i
                    bestMerged = m.merged
                }
            }
            guard bestIndex >= 0 else { break }
            // Merge every occurrence of this pair, left to right (same result as one at a time).
            let a = symbols[bestIndex], b = symbols[bestIndex + 1]
            var merged: [Int32] = []
            merged.reserveCapacity(symbols.count)
            var i = 0
            while i < symbols.count {
                if i + 1 < symbols.count && symbols[i] == a && symbols[i + 1] == b {
                    merged.append(bestMerged)
                    i += 2
                } else {
                    merged.append(symbols[i])
                    i += 1
                }
            }
            symbols = merged
        }
        return symbols
    }

    public func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        var bytes: [UInt8] = []
        for id in ids {
            guard id >= 0 && id < tokens.count else { continue }
            if isControl[id] {
                if !skipSpecialTokens { bytes.append(contentsOf: Array(tokens[id].utf8)) }
                continue
            }
            for s in tokens[id].unicodeScalars {
                if let b = ByteLevel.scalarToByte[s.value] { bytes.append(b) } else { bytes.append(contentsOf: Array(String(s).utf8)) }
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
