import ArgumentParser
import Foundation
import TopiaryCore

@main
struct Topiary: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topiary",
        abstract: "Make LLMs smaller and faster by structural pruning, recover them with LoRA, and measure them — on a CPU.",
        discussion: """
            Models are read from GGUF files (LLaMA family; default SmolLM2-135M-Instruct) with their own tokenizer.
            Set-up (see README.md) puts the default model at \(ModelArguments.defaultModel).
            Evaluation data is read from ../shared/data (or --data / $TOPIARY_DATA).
            """,
        subcommands: [QuickStart.self, Run.self, ReportCommand.self, Inspect.self, Tokenize.self, PerplexityCommand.self, Generate.self, Evaluate.self, GraphCommand.self, Prune.self, Sparsify.self, Sweep.self, Finetune.self, Export.self, Bench.self, Verify.self, Header.self, Synthesize.self])
}

/// Runs `body`, turning any error into one line on stderr and exit code 1 (no stack trace, no crash).
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ExitCode {
        throw error
    } catch {
        let message = (error as? LocalizedError)?.errorDescription ?? "\(error)"
        FileHandle.standardError.write(Data("topiary: error: \(message)\n".utf8))
        throw ExitCode.failure
    }
}

/// Prints a value as pretty JSON with sorted keys.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// Reads a whole UTF-8 text file with a clear error when it is missing, unreadable or empty.
func readText(_ path: String) throws -> String {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw CLIError("\(path): no such file")
    }
    guard !isDirectory.boolValue else { throw CLIError("\(path): is a directory, expected a text file") }
    guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("\(path): cannot be read") }
    guard !data.isEmpty else { throw CLIError("\(path): the file is empty") }
    return String(decoding: data, as: UTF8.self)
}

struct CLIError: Error, LocalizedError {
    let message: String
    init(_ message: String) { self.message = message }
    var errorDescription: String? { message }
}
