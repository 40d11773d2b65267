import Foundation
import TopiaryCore
import TopiaryTokenizers

/// One tokenized instruction example: prompt followed by response (and EOS). Only response tokens are
/// trained on unless `promptLength` is 0 (train on inputs).
public struct InstructionExample: Sendable, Equatable {
    public var ids: [Int32]
    /// Tokens at positions < promptLength are context only (their labels are ignored).
    public var promptLength: Int

    public init(ids: [Int32], promptLength: Int) {
        self.ids = ids
        self.promptLength = promptLength
    }
}

/// Instruction data in Alpaca form: a JSON array (or JSON Lines) of `{"instruction", "input", "output"}`.
public enum AlpacaData {
    public struct Record: Sendable, Equatable {
        public var instruction: String
        public var input: String
        public var output: String
    }

    /// The Alpaca prompt template (as alpaca-lora and LLM-Pruner's post-training use it).
    public static func prompt(instruction: String, input: String) -> String {
        if input.isEmpty {
            return "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
                + "### Instruction:\n\(instruction)\n\n### Response:\n"
        }
        return "Below is an instruction that describes a task, paired with an input that provides further context. "
            + "Write a response that appropriately completes the request.\n\n### Instruction:\n\(instruction)\n\n### "
            + "Input:\n\(input)\n\n### Response:\n"
    }

    /// Reads the records of `path`, with an error naming the file and the record for anything malformed.
    public static func read(path: String) throws -> [Record] {
        // Missing, empty and non-UTF-8 files are refused here, naming the file (and the offset of a bad byte).
        let data: Data
        do { data = Data(try readTextFile(path).utf8) } catch { throw TrainingError.data(error.localizedDescription) }
        var objects: [Any] = []
        if let array = (try? JSONSerialization.jsonObject(with: data)) as? [Any] {
            objects = array
        } else {
            for (i, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
                guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) else {
                    throw TrainingError.data(
                        "\(path): line \(i + 1) is not JSON (expected a JSON array or JSON Lines of {instruction, input, output})")
                }
                objects.append(o)
            }
        }
        var records: [Record] = []
        for (i, o) in objects.enumerated() {
            guard let d = o as? [String: Any], let instruction = d["instruction"] as? String, let output = d["output"] as? String else {
                throw TrainingError.data("\(path): record \(i) lacks a string `instruction` or `output`")
            }
            records.append(Record(instruction: instruction, input: d["input"] as? String ?? "", output: output))
        }
        guard !records.isEmpty else { throw TrainingError.data("\(path): no records") }
        return records
    }

    /// Tokenizes records with the template: BOS as the model adds it, prompt, response, EOS; cut to `maxLength` tokens.
    public static func tokenize(_ records: [Record], tokenizer: any Tokenizer, maxLength: Int, trainOnInputs: Bool) -> [InstructionExample]
    {
        records.map { r in
            let p = prompt(instruction: r.instruction, input: r.input)
            let promptIDs = tokenizer.encode(p, addSpecialTokens: true, parseSpecial: false)
            var ids = tokenizer.encode(p + r.output, addSpecialTokens: true, parseSpecial: false)
            if let eos = tokenizer.eosTokenID { ids.append(eos) }
            return InstructionExample(
                ids: ids.prefix(maxLength).map(Int32.init), promptLength: trainOnInputs ? 0 : min(promptIDs.count, maxLength))
        }
    }

    /// A seeded split: `validation` examples held out, the rest for training (both in a shuffled order).
    public static func split(
        _ examples: [InstructionExample], validation: Int, seed: UInt64
    ) -> (train: [InstructionExample], validation: [InstructionExample]) {
        var order = Array(examples.indices)
        var state = seed &+ 0x9E37_79B9_7F4A_7C15
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            order.swapAt(i, Int((state >> 33) % UInt64(i + 1)))
        }
        let v = min(validation, max(0, examples.count - 1))
        return (order.dropFirst(v).map { examples[$0] }, order.prefix(v).map { examples[$0] })
    }
}
