import Foundation
@testable import TopiaryTokenizers
import XCTest

/// A tiny byte-level vocabulary: all 256 byte symbols plus a few merges.
func tinyTokenizer(pre: String = "gpt2", merges: [String] = ["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o"]) throws -> BPETokenizer {
    var tokens = (0..<256).map { String(Character(ByteLevel.byteToScalar[$0])) }
    for m in merges { tokens.append(m.replacingOccurrences(of: " ", with: "")) }
    tokens.append("<|end|>")
    var types = [Int](repeating: 1, count: tokens.count)
    types[types.count - 1] = 3
    return try BPETokenizer(
        tokens: tokens, merges: merges, tokenTypes: types, preTokenizer: pre, bosTokenID: nil,
        eosTokenID: tokens.count - 1, unknownTokenID: nil, addBOS: false, addEOS: true)
}

final class BPETokenizerTests: XCTestCase {
    func testMergesApplyByRank() throws {
        let t = try tinyTokenizer()
        let ids = t.encode("hello")
        XCTAssertEqual(ids.map { t.tokenString($0)! }, ["hello"])
        // "Ġw" merges before "Ġwo"; "o" alone stays a byte token.
        XCTAssertEqual(t.encode(" wow").map { t.tokenString($0)! }, ["Ġwo", "w"])
        XCTAssertEqual(t.encode("hel").map { t.tokenString($0)! }, ["he", "l"])
    }

    func testGPT2PreTokenizerSplits() throws {
        let p = try PreTokenizer(name: "gpt2")
        func pieces(_ s: String) -> [String] {
            let scalars = Array(s.unicodeScalars)
            return p.split(scalars).map { String(String.UnicodeScalarView(scalars[$0])) }
        }
        XCTAssertEqual(pieces("Hello world"), ["Hello", " world"])
        XCTAssertEqual(pieces("I'll don't"), ["I", "'ll", " don", "'t"])
        XCTAssertEqual(pieces("a  b"), ["a", " ", " b"])
        XCTAssertEqual(pieces("x\n\ny"), ["x", "\n", "\n", "y"])
        XCTAssertEqual(pieces("end   "), ["end", "   "])
        XCTAssertEqual(pieces("abc123 456!?"), ["abc", "123", " 456", "!?"])
        XCTAssertEqual(pieces(" !!"), [" !!"])
    }

    func testSmolLMIsolatesEveryDigit() throws {
        let p = try PreTokenizer(name: "smollm")
        let s = Array("in 2024, 3.5".unicodeScalars)
        XCTAssertEqual(
            p.split(s).map { String(String.UnicodeScalarView(s[$0])) }, ["in", " ", "2", "0", "2", "4", ",", " ", "3", ".", "5"])
    }

    func testUnknownPreTokenizerNamesTheSupportedOnes() {
        XCTAssertThrowsError(try PreTokenizer(name: "klingon", source: "x.gguf")) {
            XCTAssertEqual(
                $0.localizedDescription,
                "x.gguf: unknown pre-tokenizer 'klingon' (supported: gpt2, default, smollm, qwen2, deepseek-r1-qwen, llama3, llama-bpe)")
        }
    }

    func testRoundTripOfArbitraryText() throws {
        let t = try tinyTokenizer()
        for s in ["", "hello world", "naïve 🙂 日本", "\u{0}\u{7f}\t\r\n", "e\u{301}", String(repeating: " ", count: 100)] {
            XCTAssertEqual(t.decode(t.encode(s)), s)
        }
    }

    func testSpecialTokensParsedOnlyWhenAsked() throws {
        let t = try tinyTokenizer()
        let end = t.vocabularySize - 1
        XCTAssertEqual(t.encode("he<|end|>", addSpecialTokens: false, parseSpecial: true).last, end)
        XCTAssertFalse(t.encode("he<|end|>", addSpecialTokens: false, parseSpecial: false).contains(end))
        XCTAssertEqual(t.encode("he", addSpecialTokens: true, parseSpecial: false).last, end)  // addEOS
        XCTAssertEqual(t.decode([end], skipSpecialTokens: true), "")
        XCTAssertEqual(t.decode([end], skipSpecialTokens: false), "<|end|>")
    }

    func testBadMergeIsAClearError() {
        XCTAssertThrowsError(try tinyTokenizer(merges: ["h e", "zz qq"])) {
            XCTAssertEqual($0 as? TokenizerError, .badMerge(source: "tokenizer", index: 1, merge: "zz qq"))
        }
        XCTAssertThrowsError(
            try BPETokenizer(
                tokens: [], merges: [], tokenTypes: nil, preTokenizer: "gpt2", bosTokenID: nil,
                eosTokenID: nil, unknownTokenID: nil, addBOS: false, addEOS: false))
    }
}
