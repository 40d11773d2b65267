import Foundation

/// SentencePiece-style BPE by scores with byte fallback (GGUF `tokenizer.ggml.model = "llama"`: LLaMA 1/2,
/// Gemma), as llama.cpp's SPM tokenizer runs it:
///
/// 1. the text is split at special tokens — user-defined ones (Gemma: runs of newlines, spaces and tabs,
///    HTML tags) always, control ones (`<bos>`, `<start_of_turn>` …) only with `parseSpecial` — leftmost-longest;
/// 2. in each remaining piece spaces become `▁` (and a `▁` is prepended when `add_space_prefix` is set);
/// 3. starting from single characters, the adjacent pair whose concatenation is a vocabulary token with the
///    highest score is merged (ties: leftmost), until no pair is in the vocabulary;
/// 4. a character that is not a token is written as its UTF-8 bytes (`<0xE2>` …), or the unknown token.
///
/// ```swift
/// let tok = try SentencePieceTokenizer(tokens: tokens, scores: scores, tokenTypes: types, bosTokenID: 2,
///                                      eosTokenID: 1, unknownTokenID: 3, addBOS: true, addEOS: false,
///                                      addSpacePrefix: false)
/// let ids = tok.encode("Hello world")
/// ```
public final class SentencePieceTokenizer: Tokenizer, @unchecked Sendable {
    public let tokens: [String]
    public let scores: [Float]
    public let bosTokenID: Int?
    public let eosTokenID: Int?
    public let unknownTokenID: Int?
    public let addBOS: Bool
    public let addEOS: Bool
    public let addSpacePrefix: Bool
    let vocab: [String: Int32]
    /// `<0xXX>` byte tokens (-1 when missing).
    let byteTokens: [Int32]
    /// Per token: its bytes when it is a byte token (`<0x0A>` → 10).
    let byteValue: [Int16]
    let isControl: [Bool]
    /// Special tokens by first UTF-8 byte, longest first: (bytes, id, always matched).
    let specials: [UInt8: [(bytes: [UInt8], id: Int32, always: Bool)]]

    public var vocabularySize: Int { tokens.count }

    /// - Parameters:
    ///   - tokenTypes: GGUF token types (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    public init(
        tokens: [String], scores: [Float], tokenTypes: [Int]?, bosTokenID: Int?, eosTokenID: Int?,
        unknownTokenID: Int?, addBOS: Bool, addEOS: Bool, addSpacePrefix: Bool, source: String = "tokenizer"
    ) throws {
        guard !tokens.isEmpty else { throw TokenizerError.emptyVocabulary(source: source) }
        guard scores.count == tokens.count else {
            throw TokenizerError.invalidJSON(source: source, detail: "\(scores.count) scores for \(tokens.count) tokens")
        }
        self.tokens = tokens
        self.scores = scores
        self.bosTokenID = bosTokenID
        self.eosTokenID = eosTokenID
        self.unknownTokenID = unknownTokenID
        self.addBOS = addBOS
        self.addEOS = addEOS
        self.addSpacePrefix = addSpacePrefix
        let types = tokenTypes ?? []
        func type(_ i: Int) -> Int { i < types.count ? types[i] : 1 }
        var v: [String: Int32] = [:]
        v.reserveCapacity(tokens.count)
        var bytes = [Int32](repeating: -1, count: 256)
        var byteValue = [Int16](repeating: -1, count: tokens.count)
        var sp: [UInt8: [(bytes: [UInt8], id: Int32, always: Bool)]] = [:]
        for (i, t) in tokens.enumerated() {
            switch type(i) {
            case 6:
                // `<0xXX>`
                if t.count == 6, t.hasPrefix("<0x"), t.hasSuffix(">"), let b = UInt8(t.dropFirst(3).prefix(2), radix: 16) {
                    if bytes[Int(b)] < 0 { bytes[Int(b)] = Int32(i) }
                    byteValue[i] = Int16(b)
                }
            case 3, 4:
                let u = Array(t.utf8)
                if let first = u.first { sp[first, default: []].append((u, Int32(i), type(i) == 4)) }
            default:
                if v[t] == nil { v[t] = Int32(i) }
            }
        }
        vocab = v
        byteTokens = bytes
        self.byteValue = byteValue
        isControl = tokens.indices.map { type($0) == 3 }
        specials = sp.mapValues { $0.sorted { $0.bytes.count > $1.bytes.count } }
    }

    public func tokenString(_ id: Int) -> String? { id >= 0 && id < tokens.count ? tokens[id] : nil }

    public func encode(_ text: String, addSpecialTokens: Bool, parseSpecial: Bool) -> [Int] {
        var out: [Int32] = []
        if addSpecialTokens, addBOS, let b = bosTokenID { out.append(Int32(b)) }
        let bytes = Array(text.utf8)
        var start = 0, i = 0, first = true
        while i < bytes.count {
            if let candidates = specials[bytes[i]],
                let match = candidates.first(where: { c in
                    (c.always || parseSpecial) && i + c.bytes.count <= bytes.count
                        && bytes[i..<(i + c.bytes.count)].elementsEqual(c.bytes)
                })
            {
                if start < i { encodePiece(bytes[start..<i], prefix: first && addSpacePrefix, into: &out) }
                first = false
                out.append(match.id)
                i += match.bytes.count
                start = i
            } else {
                i += 1
            }
        }
        if start < bytes.count { encodePiece(bytes[start..<bytes.count], prefix: first && addSpacePrefix, into: &out) }
        if addSpecialTokens, addEOS, let e = eosTokenID { out.append(Int32(e)) }
        return out.map(Int.init)
    }

    /// Merges by score within one piece of plain text.
    func encodePiece(_ raw: ArraySlice<UInt8>, prefix: Bool, into out: inout [Int32]) {
        // Spaces → "▁" (E2 96 81).
        var text: [UInt8] = []
        text.reserveCapacity(raw.count + 8)
        if prefix { text += [0xE2, 0x96, 0x81] }
        for b in raw { if b == 0x20 { text += [0xE2, 0x96, 0x81] } else { text.append(b) } }
        // Symbols: one UTF-8 character each, in a doubly linked list.
        var start: [Int32] = [], length: [Int32] = []
        var p = 0
        while p < text.count {
            let b = text[p]
            let n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4
            let len = min(n, text.count - p)
            start.append(Int32(p))
            length.append(Int32(len))
            p += len
        }
        let count = start.count
        guard count > 0 else { return }
        var prev = (0..<count).map { Int32($0 - 1) }
        var next = (0..<count).map { Int32($0 + 1 < count ? $0 + 1 : -1) }
        var heap = BigramHeap()
        func lookup(_ s: Int, _ n: Int) -> Int32? {
            text.withUnsafeBufferPointer { buf in
                vocab[String(decoding: UnsafeBufferPointer(rebasing: buf[s..<(s + n)]), as: UTF8.self)]
            }
        }
        func tryAdd(_ left: Int32, _ right: Int32) {
            guard left >= 0, right >= 0 else { return }
            let s = Int(start[Int(left)]), n = Int(length[Int(left)] + length[Int(right)])
            guard let id = lookup(s, n) else { return }
            heap.push(Bigram(score: scores[Int(id)], left: left, right: right, size: Int32(n)))
        }
        for k in 1..<max(count, 1) { tryAdd(Int32(k - 1), Int32(k)) }
        while let bg = heap.pop() {
            let l = Int(bg.left), r = Int(bg.right)
            // Stale: one side was merged away or grew since the bigram was queued.
            guard length[l] > 0, length[r] > 0, length[l] + length[r] == bg.size, next[l] == bg.right else { continue }
            length[l] += length[r]
            length[r] = 0
            next[l] = next[r]
            if next[r] >= 0 { prev[Int(next[r])] = Int32(l) }
            tryAdd(prev[l], Int32(l))
            tryAdd(Int32(l), next[l])
        }
        var k: Int32 = 0
        while k >= 0 {
            let s = Int(start[Int(k)]), n = Int(length[Int(k)])
            if let id = lookup(s, n) {
                out.append(id)
            } else {
                for b in text[s..<(s + n)] {
                    let t = byteTokens[Int(b)]
                    if t >= 0 { out.append(t) } else if let u = unknownTokenID { out.append(Int32(u)) }
                }
            }
            k = next[Int(k)]
        }
    }

    public func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        var bytes: [UInt8] = []
        for id in ids {
            guard id >= 0 && id < tokens.count else { continue }
            if isControl[id] {
                if !skipSpecialTokens { bytes.append(contentsOf: Array(tokens[id].utf8)) }
                continue
            }
            if byteValue[id] >= 0 { bytes.append(UInt8(byteValue[id])); continue }
            for b in tokens[id].utf8 { bytes.append(b) }
        }
        // "▁" → " "
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if i + 2 < bytes.count, bytes[i] == 0xE2, bytes[i + 1] == 0x96, bytes[i + 2] == 0x81 {
                out.append(0x20)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        if addSpacePrefix, out.first == 0x20 { out.removeFirst() }
        return String(decoding: out, as: UTF8.self)
    }
}

struct Bigram {
    var score: Float
    var left: Int32
    var right: Int32
    var size: Int32

    /// Higher score first; on a tie, the leftmost pair (llama.cpp's `llm_bigram_spm::comparator`).
    func before(_ o: Bigram) -> Bool { score > o.score || (score == o.score && left < o.left) }
}

/// A binary max-heap of bigrams.
struct BigramHeap {
    var items: [Bigram] = []

    mutating func push(_ b: Bigram) {
        items.append(b)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i].before(items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Bigram? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var best = i
                if l < items.count && items[l].before(items[best]) { best = l }
                if r < items.count && items[r].before(items[best]) { best = r }
                if best == i { break }
                items.swapAt(i, best)
                i = best
            }
        }
        return top
    }
}
