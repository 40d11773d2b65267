import Foundation
import XCTest

import TopiaryTokenizers

/// A vocabulary written as `tokenizer.json` + `tokenizer_config.json` + `generation_config.json` reads back as the same
/// tokenizer: every token kept (canonically equivalent ones and U+FEFF included), SentencePiece scores turned into merges
/// and back into the same merge order, special tokens and BOS/EOS settings preserved.
final class HuggingFaceTokenizerFileTests: XCTestCase {
    func roundTrip(_ v: TokenizerVocabulary) throws -> TokenizerVocabulary {
        let files = try v.huggingFaceFiles()
        return try TokenizerVocabulary(
            huggingFaceJSON: try XCTUnwrap(files["tokenizer.json"]), config: files["tokenizer_config.json"],
            generationConfig: files["generation_config.json"], source: "tokenizer.json")
    }

    func testSentencePieceVocabularyRoundTrips() throws {
        let tokens = [
            "<pad>", "<eos>", "<bos>", "<unk>", "▁", "a", "b", "\u{E9}", "e\u{301}", "e", "\u{301}", "\u{FEFF}", "▁a", "ab",
            "▁ab", "▁\u{E9}", "▁\u{FEFF}", "<0x0A>", "<0x41>", "  ", "\n\n",
        ]
        var types = Array(repeating: 1, count: tokens.count)
        for i in 0..<3 { types[i] = 3 }
        types[3] = 3
        types[17] = 6
        types[18] = 6
        types[19] = 4
        types[20] = 4
        var v = TokenizerVocabulary(model: .sentencePiece, tokens: tokens, tokenTypes: types)
        v.scores = tokens.indices.map { types[$0] == 1 ? -Float($0) : 0 }
        v.bosTokenID = 2
        v.eosTokenID = 1
        v.unknownTokenID = 3
        v.paddingTokenID = 0
        v.addBOS = true
        v.chatTemplate = "{{ messages }}"
        let back = try roundTrip(v)
        XCTAssertEqual(back.model, .sentencePiece)
        XCTAssertEqual(back.tokens.map { Array($0.unicodeScalars) }, tokens.map { Array($0.unicodeScalars) })
        XCTAssertEqual(back.tokenTypes, types)
        XCTAssertEqual([back.bosTokenID, back.eosTokenID, back.unknownTokenID, back.paddingTokenID], [2, 1, 3, 0])
        XCTAssertTrue(back.addBOS)
        XCTAssertFalse(back.addEOS)
        XCTAssertFalse(back.addSpacePrefix)
        XCTAssertEqual(back.chatTemplate, "{{ messages }}")
        // Scores come back as merge ranks: the same order among the pieces merges form.
        let formed = [12, 13, 14, 15, 16]
        XCTAssertEqual(formed.sorted { back.scores[$0] > back.scores[$1] }, formed.sorted { v.scores[$0] > v.scores[$1] })
        let a = try v.makeTokenizer(source: "a"), b = try back.makeTokenizer(source: "b")
        for text in ["ab a\u{E9}", " \u{FEFF}x", "e\u{301}a  b\n\nA", "ab\nab"] {
            XCTAssertEqual(
                b.encode(text, addSpecialTokens: true, parseSpecial: false), a.encode(text, addSpecialTokens: true, parseSpecial: false),
                text)
        }
    }

    func testByteLevelVocabularyRoundTripsWithEachPreTokenizer() throws {
        let tokens = ["<|endoftext|>", "a", "b", "Ġ", "Ġa", "ab", "1", "2", "12"]
        for pre in ["smollm", "llama-bpe", "qwen2", "gpt2"] {
            var v = TokenizerVocabulary(model: .byteLevelBPE, tokens: tokens, tokenTypes: [3, 1, 1, 1, 1, 1, 1, 1, 1])
            v.merges = ["Ġ a", "a b", "1 2"]
            v.preTokenizer = pre
            v.eosTokenID = 0
            let back = try roundTrip(v)
            XCTAssertEqual(back.tokens, tokens, pre)
            XCTAssertEqual(back.merges, v.merges, pre)
            XCTAssertEqual(back.preTokenizer, pre, pre)
            XCTAssertEqual(back.eosTokenID, 0, pre)
            XCTAssertFalse(back.addBOS, pre)
            let a = try v.makeTokenizer(source: pre), b = try back.makeTokenizer(source: pre)
            XCTAssertEqual(b.encode("ab a 12 ab"), a.encode("ab a 12 ab"), pre)
        }
    }

    func testUnsupportedLayoutsAreRefusedNamingTheFile() throws {
        func json(_ root: [String: Any]) throws -> Data { try JSONSerialization.data(withJSONObject: root) }
        let wordPiece: [String: Any] = ["model": ["type": "WordPiece", "vocab": ["a": 0]]]
        XCTAssertThrowsError(try TokenizerVocabulary(huggingFaceJSON: try json(wordPiece), source: "w/tokenizer.json")) {
            XCTAssertTrue($0.localizedDescription.contains("w/tokenizer.json: tokenizer model 'WordPiece' is not supported"), "\($0)")
        }
        let metaspaceSplit: [String: Any] = [
            "model": ["type": "BPE", "vocab": ["a": 0], "merges": [], "byte_fallback": true],
            "pre_tokenizer": ["type": "Metaspace", "replacement": "▁", "split": true],
        ]
        XCTAssertThrowsError(try TokenizerVocabulary(huggingFaceJSON: try json(metaspaceSplit), source: "m/tokenizer.json")) {
            XCTAssertTrue($0.localizedDescription.contains("m/tokenizer.json: unknown pre-tokenizer"), "\($0)")
        }
        let badMerge: [String: Any] = [
            "model": ["type": "BPE", "vocab": ["a": 0, "b": 1], "merges": [["a", "c"]], "byte_fallback": true],
            "normalizer": ["type": "Replace", "pattern": ["String": " "], "content": "▁"],
        ]
        XCTAssertThrowsError(try TokenizerVocabulary(huggingFaceJSON: try json(badMerge), source: "b/tokenizer.json")) {
            XCTAssertTrue($0.localizedDescription.contains("b/tokenizer.json: merge 0 'a c'"), "\($0)")
        }
    }
}
