import ArgumentParser
import Foundation
import TopiaryCore

@main
struct Topiary: ParsableCommand {
    /// Parses with the project's grammar (negative numbers are values), runs, and reports every error the same way:
    /// `topiary: error: …` on stderr, exit 64 for usage errors (with the usage line), 1 for errors while running.
    static func main() {
        let arguments = negativeValuesJoined(Array(CommandLine.arguments.dropFirst()))
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            report(error)
        }
    }

    /// One line on stderr, `topiary: error: …` (with the usage line for usage errors), and the exit code: 64 for
    /// usage, 1 for errors while running; help and version go to stdout with 0.
    static func report(_ error: Error) -> Never {
        if let code = error as? ExitCode { Foundation.exit(code.rawValue) }  // already reported by `reportingErrors`
        if let message = OutputLocation.describe(error) ?? (error as? LocalizedError)?.errorDescription {
            FileHandle.standardError.write(Data("topiary: error: \(message)\n".utf8))
            Foundation.exit(ExitCode.failure.rawValue)
        }
        let code = exitCode(for: error)
        guard code != .success else { exit(withError: error) }  // --help, --version, --experimental-dump-help
        let full = fullMessage(for: error)
        let text = full.hasPrefix("Error: ") ? String(full.dropFirst("Error: ".count)) : full
        FileHandle.standardError.write(Data("topiary: error: \(oneLine(text))\n".utf8))
        Foundation.exit(code.rawValue)
    }

    /// ArgumentParser's message on one line (the choices of an enumerated option listed after it, its help line
    /// dropped), followed by the usage lines as they are.
    static func oneLine(_ text: String) -> String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let usage = lines.firstIndex { $0.hasPrefix("Usage:") } ?? lines.count
        var message = lines.first ?? ""
        let choices = lines[min(1, usage)..<usage].filter { $0.hasPrefix("  - ") }.map { String($0.dropFirst(4)) }
        if !choices.isEmpty { message += " " + choices.joined(separator: ", ") }
        for line in lines[min(1, usage)..<usage] where !line.hasPrefix("  - ") && !line.hasPrefix("Help:") && !line.isEmpty {
            message += " " + line.trimmingCharacters(in: .whitespaces)
        }
        return ([message] + lines[usage...]).joined(separator: "\n")
    }

    /// `--ratio -0.1` → `--ratio=-0.1`: a value that is a negative number is a value, not an unknown flag, so that the
    /// option's own range check answers (ArgumentParser reads a leading dash as the start of another option).
    static func negativeValuesJoined(_ args: [String]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < args.count {
            let a = args[i]
            if a == "--" { out += args[i...]; break }
            if a.hasPrefix("--"), !a.contains("="), i + 1 < args.count, isNegativeNumber(args[i + 1]) {
                out.append(a + "=" + args[i + 1])
                i += 2
                continue
            }
            out.append(a)
            i += 1
        }
        return out
    }

    /// A dash followed by a digit or a point: `-0.1`, `-5`, `-1-3` (no option of Topiary's starts that way).
    static func isNegativeNumber(_ s: String) -> Bool {
        guard s.count >= 2, s.hasPrefix("-"), let c = s.dropFirst().first else { return false }
        return c.isNumber || (c == "." && s.count >= 3)
    }

    static let configuration = CommandConfiguration(
        commandName: "topiary",
        abstract: "Make LLMs smaller and faster by structural pruning, recover them with LoRA, and measure them — on a CPU.",
        discussion: """
            Models are read from GGUF files or Hugging Face model directories (LLaMA, Qwen2, Gemma 3; default \
            SmolLM2-135M-Instruct) with their own tokenizer.
            Without --model, the default model is $TOPIARY_MODEL, or the first of \
            \(DefaultLocations.modelCandidates.joined(separator: ", ")) that exists (`make model` fetches it and links \
            it into $TOPIARY_HOME/models, default ~/.cache/topiary/models, so any working folder finds it).
            Evaluation data is read from --data, else $TOPIARY_DATA, else the first of ../shared/data, the repository's \
            ../shared/data and $TOPIARY_HOME/data that holds it.
            """,
        subcommands: [
            QuickStart.self, Run.self, ReportCommand.self, Inspect.self, Tokenize.self, PerplexityCommand.self, Generate.self,
            Evaluate.self, GraphCommand.self, Prune.self, Sparsify.self, Sweep.self, Finetune.self, Distill.self, Export.self, Bench.self,
            Verify.self,
            Header.self, Synthesize.self, Slurm.self,
        ])
}

/// Runs `body`, turning any error into one line on stderr and exit code 1 (no stack trace, no crash).
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ExitCode {
        throw error
    } catch {
        let message = OutputLocation.describe(error) ?? (error as? LocalizedError)?.errorDescription ?? "\(error)"
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

struct CLIError: Error, LocalizedError {
    let message: String
    init(_ message: String) { self.message = message }
    var errorDescription: String? { message }
}
