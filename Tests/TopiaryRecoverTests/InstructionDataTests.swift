import Foundation
import TopiaryCore
import TopiaryModels
import TopiaryRecover
import TopiaryTokenizers
import XCTest

/// A character tokenizer over a tiny alphabet (ids 0…39), for instruction-data tests.
struct CharTokenizer: Tokenizer {
    static let alphabet = Array(" abcdefghijklmnopqrstuvwxyz#:.\n,?!'()-0")
    func encode(_ text: String, addSpecialTokens: Bool, parseSpecial: Bool) -> [Int] {
        (addSpecialTokens ? [1] : []) + text.lowercased().map { c in Self.alphabet.firstIndex(of: c) ?? 0 }
    }
    func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String { String(ids.map { Self.alphabet[$0] }) }
    func tokenString(_ id: Int) -> String? { String(Self.alphabet[id]) }
    var vocabularySize: Int { 40 }
    var bosTokenID: Int? { 1 }
    var eosTokenID: Int? { 39 }
}

final class InstructionDataTests: XCTestCase {
    func write(_ text: String) -> String {
        let path = NSTemporaryDirectory() + "topiary-alpaca-\(getpid())-\(UUID().uuidString).json"
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        addTeardownBlock { unlink(path) }
        return path
    }

    func testTemplateMaskingAndPadding() throws {
        let path = write(
            #"[{"instruction": "say hi", "input": "", "output": "hi"}, {"instruction": "add", "input": "one two", "output": "three"}]"#)
        let records = try AlpacaData.read(path: path)
        XCTAssertEqual(records.count, 2)
        XCTAssertTrue(AlpacaData.prompt(instruction: "say hi", input: "").hasSuffix("### Instruction:\nsay hi\n\n### Response:\n"))
        XCTAssertTrue(AlpacaData.prompt(instruction: "add", input: "one two").contains("### Input:\none two\n\n### Response:\n"))
        let tok = CharTokenizer()
        let examples = AlpacaData.tokenize(records, tokenizer: tok, maxLength: 512, trainOnInputs: false)
        let p0 = AlpacaData.prompt(instruction: "say hi", input: "")
        XCTAssertEqual(examples[0].promptLength, p0.count + 1)  // BOS + prompt
        XCTAssertEqual(examples[0].ids.count, p0.count + 1 + 2 + 1)  // + "hi" + EOS
        XCTAssertEqual(examples[0].ids.last, 39)
        XCTAssertEqual(AlpacaData.tokenize(records, tokenizer: tok, maxLength: 512, trainOnInputs: true)[0].promptLength, 0)

        // Labels: only the response tokens and EOS (predicted from the position before each); padding ignored.
        var c = TrainingConfig()
        c.batchSize = 1
        c.length = 256
        c.steps = 3
        c.validationWindows = 0
        var l = LoRAConfig()
        l.rank = 2
        let trainer = try LoRATrainer(model: try tinyModel(), lora: l, config: c, examples: [examples[0]], validation: [], padID: 39)
        let labelled = trainer.debugBatch(step: 0).targets.enumerated().filter { $0.element != -100 }
        XCTAssertEqual(labelled.map(\.element), Array(examples[0].ids.suffix(3)))  // "h", "i", EOS
        XCTAssertEqual(labelled.first?.offset, examples[0].promptLength - 1)
        try trainer.run(directory: nil)
        XCTAssertEqual(trainer.history.count, 3)
    }

    func testInstructionTrainingLowersHeldOutLoss() throws {
        // Learnable responses: the answer repeats the instruction's word.
        let words = ["cat", "dog", "sun", "sea", "red", "ice", "owl", "fox", "bee", "elm", "oak", "ink"]
        let json =
            "["
            + (0..<48).map { i in
                let w = words[i % words.count]
                return #"{"instruction": "echo \#(w)", "output": "\#(w)"}"#
            }.joined(separator: ",") + "]"
        let examples = AlpacaData.tokenize(
            try AlpacaData.read(path: write(json)), tokenizer: CharTokenizer(), maxLength: 160, trainOnInputs: false)
        let (train, validation) = AlpacaData.split(examples, validation: 8, seed: 3)
        XCTAssertEqual(train.count, 40)
        XCTAssertEqual(validation.count, 8)
        XCTAssertEqual(AlpacaData.split(examples, validation: 8, seed: 3).validation, validation, "the split is seeded")
        var c = TrainingConfig()
        c.learningRate = 2e-2
        c.batchSize = 4
        c.length = 160
        c.steps = 40
        c.validationWindows = 8
        c.evaluateEvery = 0
        var l = LoRAConfig()
        l.rank = 4
        l.dropout = 0
        let trainer = try LoRATrainer(model: try tinyModel(), lora: l, config: c, examples: train, validation: validation, padID: 39)
        let before = try XCTUnwrap(trainer.validationLoss())
        try trainer.run(directory: nil)
        let after = try XCTUnwrap(trainer.validationLoss())
        XCTAssertLessThan(after, before - 0.3, "held-out response loss \(before) → \(after)")
    }

    func testBadInstructionFiles() throws {
        XCTAssertThrowsError(try AlpacaData.read(path: write(""))) {
            XCTAssertTrue("\($0.localizedDescription)".contains("the file is empty"))
        }
        let missing = write(#"[{"instruction": "x"}]"#)
        XCTAssertThrowsError(try AlpacaData.read(path: missing)) {
            XCTAssertTrue("\($0.localizedDescription)".contains("\(missing): record 0 lacks a string `instruction` or `output`"), "\($0)")
        }
        let lines = write("{\"instruction\": \"a\", \"output\": \"b\"}\nnot json\n")
        XCTAssertThrowsError(try AlpacaData.read(path: lines)) {
            XCTAssertTrue("\($0.localizedDescription)".contains("line 2 is not JSON"), "\($0)")
        }
        // Prompts longer than the window leave nothing to train on.
        let long = AlpacaData.tokenize(
            try AlpacaData.read(path: write(#"[{"instruction": "a long instruction", "output": "b"}]"#)),
            tokenizer: CharTokenizer(), maxLength: 32, trainOnInputs: false)
        var c = TrainingConfig()
        c.length = 32
        XCTAssertThrowsError(
            try LoRATrainer(model: try tinyModel(), lora: LoRAConfig(), config: c, examples: long, validation: [], padID: 0)
        ) {
            XCTAssertTrue("\($0.localizedDescription)".contains("nothing to train on"), "\($0)")
        }
    }
}
