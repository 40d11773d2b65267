import Foundation
@testable import TopiaryTokenizers
import XCTest

/// The Qwen2 / LLaMA-3 pre-tokenizer against the pieces Python's `regex` module finds with the patterns llama.cpp
/// uses for `qwen2`/`deepseek-r1-qwen` (single digits) and `llama3` (runs of up to three digits).
final class Llama3PreTokenizerTests: XCTestCase {
    // (text, qwen2 pieces, llama3 pieces), generated with regex.findall on the two patterns.
    static let cases: [(String, [String], [String])] = [
        (
            "Hello world! It's 2024, we'RE   testing...\n\n  (parens) x=12345;\tTabs\r\nend  ",
            [
                "Hello", " world", "!", " It", "'s", " ", "2", "0", "2", "4", ",", " we", "'RE", "  ", " testing", "...\n\n", " ", " (",
                "parens", ")", " x", "=", "1", "2", "3", "4", "5", ";", "\tTabs", "\r\n", "end", "  ",
            ],
            [
                "Hello", " world", "!", " It", "'s", " ", "202", "4", ",", " we", "'RE", "  ", " testing", "...\n\n", " ", " (", "parens",
                ")", " x", "=", "123", "45", ";", "\tTabs", "\r\n", "end", "  ",
            ]
        ),
        (
            "I'M  don'T\n \n  x",
            ["I", "'M", " ", " don", "'T", "\n \n", " ", " x"],
            ["I", "'M", " ", " don", "'T", "\n \n", " ", " x"]
        ),
        (
            "ça coûte 3€ — «quote»  ",
            ["ça", " coûte", " ", "3", "€", " —", " «", "quote", "»", "  "],
            ["ça", " coûte", " ", "3", "€", " —", " «", "quote", "»", "  "]
        ),
        (
            " leading",
            [" leading"],
            [" leading"]
        ),
        (
            "a.b,c!!\n",
            ["a", ".b", ",c", "!!\n"],
            ["a", ".b", ",c", "!!\n"]
        ),
        (
            "   \n\t\n x",
            ["   \n\t\n", " x"],
            ["   \n\t\n", " x"]
        ),
    ]

    func pieces(_ name: String, _ text: String) throws -> [String] {
        let scalars = Array(text.unicodeScalars)
        return try PreTokenizer(name: name).split(scalars).map { r in
            var s = String.UnicodeScalarView()
            s.append(contentsOf: scalars[r])
            return String(s)
        }
    }

    func testQwen2AndLlama3Pieces() throws {
        for (text, qwen2, llama3) in Self.cases {
            XCTAssertEqual(try pieces("qwen2", text), qwen2, text)
            XCTAssertEqual(try pieces("deepseek-r1-qwen", text), qwen2, text)
            XCTAssertEqual(try pieces("llama3", text), llama3, text)
        }
        // The GPT-2 rule splits differently (the test can fail): digits stay together, "(parens" is one piece.
        XCTAssertNotEqual(try pieces("gpt2", Self.cases[0].0), Self.cases[0].1)
    }
}
