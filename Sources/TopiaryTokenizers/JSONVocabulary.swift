import Foundation

/// A `tokenizer.json`'s `model.vocab` object read and written token by token.
///
/// Foundation's JSON objects are Swift dictionaries keyed by `String`, whose equality is canonical equivalence: two
/// vocabulary entries such as "é" (U+00E9) and "e" + U+0301 are different tokens (Gemma 3 has hundreds of such pairs)
/// but one dictionary key, so one of them would be lost. The vocabulary is therefore scanned from the raw bytes, and
/// written by hand, keeping every entry exactly. The merges are scanned too: Foundation drops a leading U+FEFF from
/// JSON strings, and Gemma 3 has a merge `▁` + U+FEFF.
enum JSONVocabulary {
    /// The `(token, id)` entries of `root.model.vocab` in file order (nil when there is no such object), the merges of
    /// `root.model.merges` (`"a b"` strings or `[a, b]` pairs; empty when there are none), and the document with those two
    /// values emptied (`{}`, `[]`), small enough for Foundation to parse the rest.
    static func read(_ data: Data, source: String) throws -> (vocab: [(String, Int)]?, merges: [(String, String)], rest: Data) {
        try data.withUnsafeBytes { raw in
            var s = Scanner(bytes: raw.bindMemory(to: UInt8.self), source: source)
            var vocab: [(String, Int)]?
            var merges: [(String, String)] = []
            var cut: [(Range<Int>, String)] = []
            guard try s.enterMember("model") else { return (nil, [], data) }
            try s.members { key, s in
                s.skipSpace()
                let start = s.i
                // Other models' vocabularies (Unigram: a list of pairs) are left to the caller, which refuses them by type.
                let next = start < s.bytes.count ? s.bytes[start] : 0
                switch key {
                case "vocab" where next == 0x7B:
                    vocab = try s.pairs()
                    cut.append((start..<s.i, "{}"))
                case "merges" where next == 0x5B:
                    merges = try s.merges()
                    cut.append((start..<s.i, "[]"))
                default: try s.skipValue()
                }
            }
            var rest = Data()
            var at = 0
            for (range, replacement) in cut.sorted(by: { $0.0.lowerBound < $1.0.lowerBound }) {
                rest.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[at..<range.lowerBound]))
                rest.append(contentsOf: Array(replacement.utf8))
                at = range.upperBound
            }
            rest.append(contentsOf: UnsafeRawBufferPointer(rebasing: raw[at...]))
            return (vocab, merges, rest)
        }
    }

    /// `{"token": id, …}` in id order, the tokens' scalars unchanged.
    static func object(_ entries: [(String, Int)]) -> Data {
        var out = Data("{".utf8)
        for (n, (token, id)) in entries.enumerated() {
            out.append(contentsOf: Array((n == 0 ? "\n" : ",\n").utf8))
            out.append(contentsOf: Array("    ".utf8))
            appendString(token, to: &out)
            out.append(contentsOf: Array(": \(id)".utf8))
        }
        out.append(contentsOf: Array("\n  }".utf8))
        return out
    }

    static func appendString(_ s: String, to out: inout Data) {
        out.append(0x22)
        for b in s.utf8 {
            switch b {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, 0x6E])
            case 0x0D: out.append(contentsOf: [0x5C, 0x72])
            case 0x09: out.append(contentsOf: [0x5C, 0x74])
            case 0..<0x20: out.append(contentsOf: Array(String(format: "\\u%04x", b).utf8))
            default: out.append(b)
            }
        }
        out.append(0x22)
    }

    /// Just enough of a JSON reader to walk to one object and read its string → integer members.
    struct Scanner {
        let bytes: UnsafeBufferPointer<UInt8>
        let source: String
        var i = 0

        func fail(_ what: String) -> TokenizerError { .invalidJSON(source: source, detail: "\(what) at byte \(i)") }

        mutating func skipSpace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
        }

        mutating func expect(_ c: UInt8) throws {
            skipSpace()
            guard i < bytes.count, bytes[i] == c else { throw fail("expected '\(Character(Unicode.Scalar(c)))'") }
            i += 1
        }

        /// Moves into the value of member `key` of the object that starts here; false when the object has no such member.
        mutating func enterMember(_ key: String) throws -> Bool {
            try expect(0x7B)
            skipSpace()
            if i < bytes.count, bytes[i] == 0x7D { return false }
            while true {
                let name = try string()
                try expect(0x3A)
                if name == key { return true }
                try skipValue()
                skipSpace()
                guard i < bytes.count else { throw fail("unterminated object") }
                if bytes[i] == 0x7D { return false }
                try expect(0x2C)
            }
        }

        /// Calls `body` with each member's key, positioned at its value (which `body` reads or skips).
        mutating func members(_ body: (String, inout Scanner) throws -> Void) throws {
            try expect(0x7B)
            skipSpace()
            if i < bytes.count, bytes[i] == 0x7D { i += 1; return }
            while true {
                let key = try string()
                try expect(0x3A)
                try body(key, &self)
                skipSpace()
                guard i < bytes.count else { throw fail("unterminated object") }
                if bytes[i] == 0x7D { i += 1; return }
                try expect(0x2C)
            }
        }

        /// An array of merges: `"a b"` (split at the first space) or `["a", "b"]`.
        mutating func merges() throws -> [(String, String)] {
            var out: [(String, String)] = []
            try expect(0x5B)
            skipSpace()
            if i < bytes.count, bytes[i] == 0x5D { i += 1; return out }
            while true {
                skipSpace()
                guard i < bytes.count else { throw fail("unterminated merges") }
                if bytes[i] == 0x5B {
                    i += 1
                    let a = try string()
                    try expect(0x2C)
                    let b = try string()
                    try expect(0x5D)
                    out.append((a, b))
                } else {
                    let m = Array(try string().utf8)
                    guard let cut = m.firstIndex(of: 0x20) else { throw fail("merge \(out.count) is not \"a b\"") }
                    out.append((String(decoding: m[..<cut], as: UTF8.self), String(decoding: m[(cut + 1)...], as: UTF8.self)))
                }
                skipSpace()
                guard i < bytes.count else { throw fail("unterminated merges") }
                if bytes[i] == 0x5D { i += 1; return out }
                try expect(0x2C)
            }
        }

        /// The members of the object that starts here, each a string key and an integer value.
        mutating func pairs() throws -> [(String, Int)] {
            var out: [(String, Int)] = []
            try expect(0x7B)
            skipSpace()
            if i < bytes.count, bytes[i] == 0x7D { return out }
            while true {
                let key = try string()
                try expect(0x3A)
                skipSpace()
                let start = i
                while i < bytes.count, (bytes[i] >= 0x30 && bytes[i] <= 0x39) || bytes[i] == 0x2D { i += 1 }
                guard i > start, i - start <= 20,
                    let id = Int(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self))
                else { throw fail("a vocabulary id is not an integer") }
                out.append((key, id))
                skipSpace()
                guard i < bytes.count else { throw fail("unterminated vocabulary") }
                if bytes[i] == 0x7D { i += 1; return out }
                try expect(0x2C)
            }
        }

        mutating func string() throws -> String {
            try expect(0x22)
            var out: [UInt8] = []
            while i < bytes.count {
                let b = bytes[i]
                i += 1
                if b == 0x22 { return String(decoding: out, as: UTF8.self) }
                guard b == 0x5C else { out.append(b); continue }
                guard i < bytes.count else { break }
                let e = bytes[i]
                i += 1
                switch e {
                case 0x6E: out.append(0x0A)
                case 0x72: out.append(0x0D)
                case 0x74: out.append(0x09)
                case 0x62: out.append(0x08)
                case 0x66: out.append(0x0C)
                case 0x75:
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar), i + 1 < bytes.count, bytes[i] == 0x5C, bytes[i + 1] == 0x75 {
                        i += 2
                        let low = try hex4()
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    out.append(contentsOf: Array(String(Unicode.Scalar(scalar).map(Character.init) ?? "\u{FFFD}").utf8))
                default: out.append(e)
                }
            }
            throw fail("unterminated string")
        }

        mutating func hex4() throws -> UInt32 {
            guard i + 4 <= bytes.count,
                let v = UInt32(String(decoding: UnsafeBufferPointer(rebasing: bytes[i..<(i + 4)]), as: UTF8.self), radix: 16)
            else { throw fail("bad \\u escape") }
            i += 4
            return v
        }

        /// Skips one value of any kind (nesting counted, not recursed).
        mutating func skipValue() throws {
            skipSpace()
            var depth = 0
            repeat {
                guard i < bytes.count else { throw fail("unterminated value") }
                switch bytes[i] {
                case 0x22: _ = try string()
                case 0x7B, 0x5B: depth += 1; i += 1
                case 0x7D, 0x5D: depth -= 1; i += 1
                default: i += 1
                }
                if depth > 0 { skipSpace() }
            } while depth > 0 && i < bytes.count
            if depth > 0 { throw fail("unterminated value") }
            // A scalar (number, literal) ends at the next delimiter.
            while i < bytes.count, ![0x2C, 0x7D, 0x5D, 0x20, 0x0A, 0x0D, 0x09].contains(bytes[i]) { i += 1 }
        }
    }
}
